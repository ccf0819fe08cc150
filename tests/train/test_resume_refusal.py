"""A resume refuses to continue a different run (issue 18, item 4), through the real CLI.

One tiny run is trained once per module; each case copies it, resumes it with one setting
changed, and must stop with exit 2 naming the key ``old -> new`` while the run's
``config.yaml`` and ``metrics.jsonl`` stay byte for byte as they were. Allowed changes
(more steps, ``allow_changes``, a branch into a new directory) go ahead and are recorded.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from train_helpers import edit_state, read_metrics, run_cli, tiny_corpus_text, tiny_overrides

pytestmark = pytest.mark.integration

STEPS = ["trainer.max_steps=4", "checkpoint.every_steps=2"]


@pytest.fixture(scope="module")
def base_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 steps of the tiny recipe, checkpoints at 2 and 4."""
    import sys

    out = tmp_path_factory.mktemp("base") / "run"
    run_cli([str(Path(sys.executable).with_name("stoker"))], "train", "gpt-char",
            *tiny_overrides(tiny_data, out, *STEPS), "--yes", check=True)
    return out


@pytest.fixture(scope="module")
def other_tokenizer_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny corpus with one character swapped for one it lacks: a char tokenizer of the
    same vocabulary size that maps ids to other characters."""
    from stoker.data.prepare import prepare

    text = tiny_corpus_text()
    old = "v"
    new = next(c for c in "QXZJKW" if c not in text)
    assert old in text
    root = tmp_path_factory.mktemp("other_tok")
    src = root / "corpus.txt"
    src.write_text(text.replace(old, new), encoding="utf-8")
    return prepare([str(src)], root / "char", type="char", split_ratios=(0.9, 0.1, 0.0),
                   workers=1)


def _copy(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(base, out)
    return out


def _resume(stoker_cmd, data: Path, out: Path, *extra: str):
    return run_cli(stoker_cmd, "train", "gpt-char",
                   *tiny_overrides(data, out, *STEPS, "trainer.max_steps=6", *extra), "--yes")


CASES = {
    "tokenizer-same-vocab": (None, "data.tokenizer_sha256"),
    "heads-same-wqkv-shape": (("model.n_heads=4", "model.n_kv_heads=2"),
                              "model.n_heads: 2 -> 4"),
    "optimizer-class": (("optim._target_=torch.optim.SGD", "~optim.betas"), 'optim._target_: "torch.optim.AdamW" -> "torch.optim.SGD"'),
    "seq_len": (("data.seq_len=16",), "data.seq_len: 32 -> 16"),
    "batch_size": (("data.batch_size=4",), "data.batch_size: 8 -> 4"),
    "lr": (("optim.lr=0.01",), "optim.lr: 0.003 -> 0.01"),
    "seed": (("seed=7",), "seed: 1337 -> 7"),
    "num_threads": (("trainer.num_threads=2",), "trainer.num_threads: 1 -> 2"),
    "grad_accum": (("trainer.grad_accum=2",), "trainer.grad_accum: 1 -> 2"),
    "schedule": (("schedule.kind=linear",), 'schedule.kind: "cosine" -> "linear"'),
    "precision": (("trainer.precision=bf16-mixed",), 'trainer.precision: "fp32" -> "bf16-mixed"'),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_resume_with_a_changed_setting_stops_before_writing(
        case: str, base_run: Path, tiny_data: Path, other_tokenizer_data: Path,
        tmp_path: Path, stoker_cmd) -> None:
    change, expected = CASES[case]
    out = _copy(base_run, tmp_path)
    before = {f: (out / f).read_bytes() for f in ("config.yaml", "metrics.jsonl", "env.json")}
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    if change is None:  # another dataset whose tokenizer has the same vocabulary size
        a = json.loads((tiny_data / "metadata.json").read_text())["vocab_size"]
        b = json.loads((other_tokenizer_data / "metadata.json").read_text())["vocab_size"]
        assert a == b
        proc = _resume(stoker_cmd, tiny_data, out, f"data.path={other_tokenizer_data}")
    else:
        proc = _resume(stoker_cmd, tiny_data, out, *change)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and " -> " in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Nothing was written" in proc.stderr
    if case != "tokenizer-same-vocab":  # a tokenizer cannot change in place
        assert "allow_changes=[" in proc.stderr
    assert "output_dir=NEW_DIR" in proc.stderr  # how to do it on purpose
    for f, data in before.items():
        assert (out / f).read_bytes() == data, f"{f} was rewritten by a refused resume"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ckpts


def test_more_steps_resume_and_are_noted_in_config_yaml(base_run: Path, tiny_data: Path,
                                                       tmp_path: Path, stoker_cmd) -> None:
    out = _copy(base_run, tmp_path)
    proc = _resume(stoker_cmd, tiny_data, out)
    assert proc.returncode == 0, proc.stderr
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    head = (out / "config.yaml").read_text().splitlines()[0]
    assert head.startswith("# changed on resume at step 4: trainer.max_steps 4 -> 6")
    # the same settings again: nothing to refuse, nothing new to note
    again = _resume(stoker_cmd, tiny_data, out)
    assert again.returncode == 0 and "already finished" in again.stdout, again.stderr


def test_allow_changes_continues_in_place_and_records_the_change(
        base_run: Path, tiny_data: Path, tmp_path: Path, stoker_cmd) -> None:
    out = _copy(base_run, tmp_path)
    proc = _resume(stoker_cmd, tiny_data, out, "optim.lr=0.01", "allow_changes=[optim.lr]")
    assert proc.returncode == 0, proc.stderr
    assert "optim.lr: 0.003 -> 0.01" in proc.stderr  # said, not silent
    record = json.loads((out / "trajectory_changes.json").read_text())["changes"]
    assert record[-1]["step"] == 4 and record[-1]["how"] == "allow_changes"
    assert record[-1]["changes"]["optim.lr"] == [0.003, 0.01]
    text = (out / "config.yaml").read_text()
    assert "optim.lr 0.003 -> 0.01" in text.splitlines()[0]
    assert "\nallow_changes:" not in text  # a permission for that resume, not a setting
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_a_misspelt_allow_changes_is_refused(base_run: Path, tiny_data: Path, tmp_path: Path,
                                            stoker_cmd) -> None:
    out = _copy(base_run, tmp_path)
    before = (out / "config.yaml").read_bytes()
    proc = _resume(stoker_cmd, tiny_data, out, "optim.lr=0.01", "allow_changes=[optim.lrr]")
    assert proc.returncode == 2 and "optim.lrr" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and (out / "config.yaml").read_bytes() == before


def test_resume_path_into_a_new_output_dir_branches(base_run: Path, tiny_data: Path,
                                                   tmp_path: Path, stoker_cmd) -> None:
    src = _copy(base_run, tmp_path)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()
              and not p.name.startswith(".stoker-run")}
    new = tmp_path / "branch"
    proc = _resume(stoker_cmd, tiny_data, new, f"resume={src}", "optim.lr=0.01")
    assert proc.returncode == 0, proc.stderr
    assert [r["step"] for r in read_metrics(new) if "loss" in r] == [5, 6]
    head = (new / "config.yaml").read_text().splitlines()[0]
    assert head.startswith(f"# continued at step 4 from {src / 'checkpoints' / 'step-00000004'}")
    assert "optim.lr 0.003 -> 0.01" in head
    assert {p: p.read_bytes() for p in before} == before  # the source run is untouched


def test_an_older_checkpoint_from_another_machine_resumes_with_notes(
        base_run: Path, tiny_data: Path, tmp_path: Path, stoker_cmd) -> None:
    """No fingerprint recorded (a checkpoint from before it existed): one warning line, and
    the resume goes on; a checkpoint saved on another machine: the drift note, no refusal."""
    from stoker.artifacts.machine import DRIFT_NOTE

    out = _copy(base_run, tmp_path)

    def older_elsewhere(tree: dict) -> dict:
        tree.pop("trajectory")
        tree["machine"] = {**tree["machine"], "cpu": "Some Other CPU", "key": "0" * 16}
        return tree

    edit_state(out / "checkpoints" / "step-00000004", older_elsewhere)
    proc = _resume(stoker_cmd, tiny_data, out)
    assert proc.returncode == 0, proc.stderr
    assert "records no trajectory fingerprint" in proc.stderr
    drift = [line for line in proc.stderr.splitlines() if DRIFT_NOTE in line]
    assert len(drift) == 1 and "Some Other CPU" in drift[0], proc.stderr
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
