"""`stoker train` end to end through the real CLI: resume rules, exactness, golden losses,
signals, and the messages a user gets for bad input."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from golden import check_golden, record_golden
from train_helpers import (kill_9_at_step, read_metrics, run_cli, safe_metrics, tiny_overrides,
                           train_losses)

from tests._shared.full_disk import fill, small_disk

pytestmark = pytest.mark.integration

# First 20 training losses of gpt-char at the tiny size of `tiny_overrides` on the tiny
# corpus of conftest.py, on CPU, one record per machine fingerprint they were recorded on
# (stoker.artifacts.machine). A change that moves them must say why.
GOLDEN_PATH = Path(__file__).with_name("golden_gpt_char.json")


def _weights(run_dir: Path, step: int) -> dict:
    return load_file(run_dir / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


@pytest.fixture(scope="module")
def reference_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 20-step run that other tests compare against."""
    out = tmp_path_factory.mktemp("ref") / "run"
    exe = [str(Path(sys.executable).with_name("stoker"))]
    run_cli(exe, "train", "gpt-char", *tiny_overrides(tiny_data, out),
            "trainer.max_steps=20", "--yes", check=True)
    return out


def test_golden_losses(reference_run: Path) -> None:
    losses = train_losses(reference_run)
    got = [losses[s] for s in range(1, 21)]
    machine = json.loads((reference_run / "env.json").read_text())["machine"]
    if os.environ.get("STOKER_RECORD_GOLDEN"):  # a change that moves them must say why
        record_golden(GOLDEN_PATH, machine, got)
    assert GOLDEN_PATH.exists(), "no golden losses: record with STOKER_RECORD_GOLDEN=1"
    check_golden(json.loads(GOLDEN_PATH.read_text()), machine, got)


def test_run_dir_layout_and_rerun_of_a_finished_run(stoker_cmd, reference_run: Path,
                                                    tiny_data: Path) -> None:
    for name in ("config.yaml", "command.txt", "env.json", "metrics.jsonl", "logs",
                 "checkpoints"):
        assert (reference_run / name).exists(), name
    env = json.loads((reference_run / "env.json").read_text())
    assert env["packages"]["torch"] and "dirty" in env["git"]
    assert sorted(p.name for p in (reference_run / "checkpoints").iterdir() if not p.name.startswith(".")) \
        == [f"step-{s:08d}" for s in (5, 10, 15, 20)]
    evals = [r for r in read_metrics(reference_run) if "eval/loss" in r]
    assert [r["step"] for r in evals] == [10, 20] and "eval/perplexity" in evals[0]
    before = (reference_run / "metrics.jsonl").read_text()
    again = run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, reference_run),
                    "trainer.max_steps=20", "--yes", check=True)
    assert "already finished at step 20" in again.stdout + again.stderr
    assert (reference_run / "metrics.jsonl").read_text() == before  # no work done


def test_stop_after_then_rerun_is_bitwise_equal(stoker_cmd, reference_run: Path,
                                                 tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = [*tiny_overrides(tiny_data, out), "trainer.max_steps=20"]
    # paused on an eval step (eval_every=10): the eval there is not lost
    first = run_cli(stoker_cmd, "train", "gpt-char", *base, "trainer.stop_after_steps=10",
                    "--yes", check=True)
    assert "stop_after_steps=10" in first.stdout
    assert (out / "checkpoints" / "step-00000010").is_dir()
    run_cli(stoker_cmd, "train", "gpt-char", *base, "--yes", check=True)
    assert _same_weights(_weights(out, 20), _weights(reference_run, 20))
    assert train_losses(out) == train_losses(reference_run)

    def evals(run: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["eval/loss"]) for r in read_metrics(run) if "eval/loss" in r]

    assert evals(out) == evals(reference_run) == [(10, evals(reference_run)[0][1]),
                                                  (20, evals(reference_run)[1][1])]


def test_raising_max_steps_continues(stoker_cmd, reference_run: Path, tiny_data: Path,
                                     tmp_path: Path) -> None:
    out = _copy_run(reference_run, tmp_path / "run")
    more = run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                   "trainer.max_steps=23", "--yes", check=True)
    assert "resum" in more.stderr.lower()
    steps = [r["step"] for r in read_metrics(out) if "eval/loss" not in r]
    assert steps == list(range(1, 24))
    assert (out / "checkpoints" / "step-00000023" / "COMMITTED").exists()


def test_kill_9_then_resume_is_bitwise_equal(stoker_cmd, reference_run: Path,
                                             tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "gpt-char", *tiny_overrides(tiny_data, out), "trainer.max_steps=20", "--yes"]
    kill_at = random.Random().randint(6, 18)  # after the first checkpoint (step 5)
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    code = kill_9_at_step([*stoker_cmd, *args], out, kill_at, env=env)
    assert code == -signal.SIGKILL, f"run ended before the kill at step {kill_at}"
    run_cli(stoker_cmd, *args, check=True)
    assert train_losses(out) == train_losses(reference_run), f"killed at {kill_at}"
    assert _same_weights(_weights(out, 20), _weights(reference_run, 20)), f"killed at {kill_at}"


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_at_the_step_boundary_and_exits_128_plus_signal(
        stoker_cmd, tiny_data: Path, tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """Ctrl-C exits 130 and SIGTERM 143 (128 + the signal, as shells report), as README says."""
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f"{code} for {sig.name}" in readme or f"{code} for Ctrl-C ({sig.name})" in readme
    out = tmp_path / "run"
    args = ["train", "gpt-char", *tiny_overrides(tiny_data, out), "trainer.max_steps=100000",
            "checkpoint.every_steps=100000", "--yes"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*stoker_cmd, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (out / "metrics.jsonl").exists() and len(safe_metrics(out)) >= 3):
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert sig.name in err and "resume" in err and "Traceback" not in err
    ckpts = [p for p in (out / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert len(ckpts) == 1 and (ckpts[0] / "COMMITTED").exists()


def test_stoker_eval_and_generate_on_a_checkpoint(stoker_cmd, reference_run: Path) -> None:
    ev = run_cli(stoker_cmd, "eval", str(reference_run), check=True)
    # the keys training logs and README shows (eval/loss), and which split was evaluated
    assert "eval/loss:" in ev.stdout and "eval/perplexity:" in ev.stdout, ev.stdout
    assert "split: valid" in ev.stdout and "valid/loss" not in ev.stdout
    gen = run_cli(stoker_cmd, "generate", "text", "--checkpoint", str(reference_run),
                  "--prompt", "def ", "-n", "20", check=True)
    assert gen.stdout.startswith("def ")


# ------------------------------------------------------------------------ bad input
def _fails(stoker_cmd, tiny_data: Path, out: Path, *extra: str) -> str:
    proc = run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                   "trainer.max_steps=3", *extra, "--yes")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stderr


BAD_INPUT = [
    (["model.architecture=transformer"], "'gpt', 'rnn', 'cnn'"),
    (["data.path=/nonexistent/data"], "/nonexistent/data"),
    (["data.batch_size=0"], "data.batch_size"),
    (["trainer.max_steps=-1"], "trainer.max_steps"),
    (["trainer.precision=fp16-mixed"], "fp16-mixed needs a CUDA GPU"),
    (["data.tokenizer=bpe"], "prepared with a 'char' tokenizer"),
    (["model.vocab_size=500"], "model.vocab_size=500"),
    (["losses.ce.logits=preds.logit"], "Did you mean 'preds.logits'"),
]


def _in_process(capsys, *args: str) -> tuple[int, str]:
    """The CLI entry point in this process: same code path as the executable, no startup."""
    import typer

    from stoker.cli.app import build_app, run_click

    capsys.readouterr()
    code = run_click(typer.main.get_command(build_app()), list(args), prog_name="stoker")
    return code, capsys.readouterr().err


def test_bad_input_is_explained_before_anything_is_written(capsys, tiny_data: Path,
                                                           tmp_path: Path) -> None:
    """Every case through the CLI entry point in-process (a subprocess each costs seconds)."""
    for i, (extra, expected) in enumerate(BAD_INPUT):
        out = tmp_path / f"run{i}"
        code, err = _in_process(capsys, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                                "trainer.max_steps=3", *extra, "--yes")
        assert code == 2, (extra, err)
        assert expected in err, (extra, err)
        assert "Traceback" not in err, (extra, err)
        assert not out.exists(), extra


@pytest.mark.parametrize("extra, expected", [BAD_INPUT[0], BAD_INPUT[5]])
def test_bad_input_through_the_real_executable(stoker_cmd, tiny_data: Path, tmp_path: Path,
                                               extra, expected) -> None:
    out = tmp_path / "run"
    err = _fails(stoker_cmd, tiny_data, out, *extra)
    assert expected in err
    assert not out.exists()


def _copy_run(reference_run: Path, dst: Path) -> Path:
    """A private copy of the reference run to damage or continue (saves a training run)."""
    shutil.copytree(reference_run, dst)
    return dst


def test_checkpoint_of_another_shape_names_the_tensors(capsys, reference_run: Path,
                                                       tiny_data: Path, tmp_path: Path) -> None:
    out = _copy_run(reference_run, tmp_path / "run")
    code, err = _in_process(capsys, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                            "trainer.max_steps=25", "model.dim=64", "--yes")
    assert code == 2 and "Traceback" not in err, err
    assert "tok_emb.weight" in err and "(47, 32)" in err and "(47, 64)" in err


def test_corrupted_checkpoint_is_detected_and_previous_offered(stoker_cmd, reference_run: Path,
                                                               tiny_data: Path,
                                                               tmp_path: Path) -> None:
    out = _copy_run(reference_run, tmp_path / "run")
    f = out / "checkpoints" / "step-00000020" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    err = _fails(stoker_cmd, tiny_data, out, "trainer.max_steps=22")
    assert "step-00000020" in err and "step-00000015" in err


def test_full_disk_during_save_keeps_the_previous_checkpoint(stoker_cmd, tiny_data: Path,
                                                             tmp_path: Path) -> None:
    """A real full disk (a small tmpfs, as root); else a file-size limit (EFBIG) stands in."""
    import resource

    with small_disk(tmp_path / "disk", 4096) as disk:
        out = (disk or tmp_path) / "run"
        run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                "trainer.max_steps=5", "--yes", check=True)
        filler = fill(disk, 48_000) if disk else None

        def limit() -> None:
            if disk is None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

        proc = subprocess.run([*stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                               "trainer.max_steps=10", "--yes"], capture_output=True, text=True,
                              preexec_fn=limit, timeout=300, check=False)
        assert proc.returncode == 1, proc.stderr  # a failed run, not bad input
        assert "Traceback" not in proc.stderr
        assert "could not save checkpoint step-00000010" in proc.stderr
        assert "step-00000005 is intact" in proc.stderr
        assert ("the disk is full" if disk else "file size limit") in proc.stderr, proc.stderr
        names = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert names == ["step-00000005"]
        # and the run resumes from it once the disk has room again
        if filler is not None:
            filler.unlink()
        run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                "trainer.max_steps=10", "--yes", check=True)
        assert (out / "checkpoints" / "step-00000010" / "COMMITTED").exists()


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(stoker_cmd, tiny_data: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                   "trainer.max_steps=50", "optim.lr=1e30", "trainer.clip=null",
                   "schedule.warmup_steps=0", "checkpoint.every_steps=1", "--yes")
    assert proc.returncode == 1, proc.stderr
    assert "non-finite" in proc.stderr and "Traceback" not in proc.stderr
    bad = [r["step"] for r in read_metrics(out) if "loss" in r and r["loss"] != r["loss"]
           or r.get("loss") in (float("inf"), "inf", "nan", "NaN")]
    steps = sorted(int(p.name[5:]) for p in (out / "checkpoints").iterdir()
                   if p.name.startswith("step-"))
    assert steps and (not bad or steps[-1] < min(bad))
