"""The built-in recipes at tiny size, `--dryrun`, and DDP through torchrun on CPU (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import read_metrics, run_cli, tiny_overrides

pytestmark = pytest.mark.integration

PUBLIC_KEYS = ["seed", "output_dir", "model.n_layers", "model.dim", "model.n_heads", "data.path",
               "data.seq_len", "data.batch_size", "optim.lr", "trainer.max_steps",
               "trainer.eval_every", "trainer.precision", "checkpoint.every_steps",
               "checkpoint.keep_last", "resume"]


@pytest.mark.parametrize("recipe", ["gpt-char", "gpt-bpe"])
def test_lm_recipes_expose_the_public_keys_and_dryrun_writes_nothing(
        stoker_cmd, tmp_path: Path, recipe: str) -> None:
    overrides = [f"{k}={v}" for k, v in [
        ("seed", 3), ("output_dir", tmp_path / "out"), ("model.n_layers", 2), ("model.dim", 64),
        ("model.n_heads", 4), ("data.path", tmp_path), ("data.seq_len", 64),
        ("data.batch_size", 4), ("optim.lr", 1e-3), ("trainer.max_steps", 7),
        ("trainer.eval_every", 3), ("trainer.precision", "bf16-mixed"),
        ("checkpoint.every_steps", 2), ("checkpoint.keep_last", 1), ("resume", "never")]]
    assert [o.split("=")[0] for o in overrides] == PUBLIC_KEYS
    proc = run_cli(stoker_cmd, "train", recipe, *overrides, "--dryrun", check=True)
    assert "trainer.max_steps" in proc.stdout or "max_steps" in proc.stdout
    assert not (tmp_path / "out").exists()
    head = Path(__file__).resolve().parents[2] / "src" / "stoker" / "recipes" / f"{recipe}.yaml"
    assert head.read_text().startswith(f"# stoker train {recipe}\n")


def test_rnn_char_trains_and_bf16_autocast_runs_on_cpu(stoker_cmd, tiny_data: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "rnn"
    ov = [o for o in tiny_overrides(tiny_data, out)
          if not o.startswith(("model.n_heads", "model.n_kv_heads", "~callbacks.samples"))]
    run_cli(stoker_cmd, "train", "rnn-char", *ov, "trainer.max_steps=6",
            "trainer.precision=bf16-mixed", "--yes", check=True)
    recs = read_metrics(out)
    assert [r["step"] for r in recs if "eval/loss" not in r] == list(range(1, 7))
    assert any("eval/perplexity" in r for r in recs)


def test_digits_cnn_reaches_useful_accuracy_and_eval_reports_it(stoker_cmd, tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    run_cli(stoker_cmd, "train", "digits-cnn", f"output_dir={out}", "trainer.max_steps=60",
            "trainer.eval_every=30", "checkpoint.every_steps=30", "loggers=[jsonl]",
            "register_artifact=false", "trainer.num_threads=1", "--yes", check=True)
    acc = [r["eval/accuracy"] for r in read_metrics(out) if "eval/accuracy" in r]
    assert len(acc) == 2 and acc[-1] > 0.8
    ev = run_cli(stoker_cmd, "eval", str(out), check=True)
    assert "eval/accuracy:" in ev.stdout and "split: valid" in ev.stdout


# Without dropout: one process and two draw different dropout masks, so only dropout-free
# curves can match across world sizes (the DDP dropout test below sets its own).
DIST_COMMON = ["trainer.max_steps=6", "trainer.eval_every=3", "checkpoint.every_steps=3",
               "model.dropout=0.0"]
SAMPLES = ("+callbacks.samples={_target_:stoker.train.callbacks.SampleGeneration,"
           "every_n_steps:3,max_new_tokens:4,prompt:'de'}")


@pytest.fixture(scope="module")
def one_process_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 steps at a global batch of 8 in one process: what DDP, FSDP2 and compile must match."""
    out = tmp_path_factory.mktemp("one") / "run"
    run_cli([str(Path(sys.executable).with_name("stoker"))], "train", "gpt-char",
            *tiny_overrides(tiny_data, out, "data.batch_size=8", *DIST_COMMON), "--yes",
            check=True)
    return out


def _same_curve(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        key = "loss" if "loss" in ra else "eval/loss"
        assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_match_one_process_at_the_same_global_batch(
        one_process_run: Path, tiny_data: Path, tmp_path: Path, strategy: str) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = tmp_path / "two"
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "stoker", "train",
         "gpt-char", *tiny_overrides(tiny_data, two, "data.batch_size=4", *DIST_COMMON),
         f"trainer.distributed={strategy}", SAMPLES, "--yes"],
        capture_output=True, text=True, env=env, timeout=240, start_new_session=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b = read_metrics(two)
    _same_curve(read_metrics(one_process_run), b)
    # rank 0 alone wrote: one metrics file, one set of checkpoints, whole samples per step
    assert b[0]["num_samples"] == 8
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-00000003",
                                                                        "step-00000006"]
    # samples during training (FSDP2: every rank takes part in generation, rank 0 writes),
    # and the loss curve above is unchanged by them
    samples = [json.loads(x) for x in (two / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in samples] == [3, 6]  # every 3 steps (the end is step 6)


@pytest.mark.slow
def test_torch_compile_on_cpu_matches_eager(one_process_run: Path, tiny_data: Path,
                                            tmp_path: Path) -> None:
    """trainer.compile=true really compiles (inductor, needs gcc) and learns the same."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "ind"))
    out = tmp_path / "compiled"
    run_cli([str(Path(sys.executable).with_name("stoker"))], "train", "gpt-char",
            *tiny_overrides(tiny_data, out, "data.batch_size=8", *DIST_COMMON),
            "trainer.compile=true", "--yes", env=env, check=True)
    assert any((tmp_path / "ind").rglob("*.py")), "inductor generated no code"
    _same_curve(read_metrics(one_process_run), read_metrics(out))


def test_trainer_epochs_runs_whole_passes_over_the_data(capsys, tiny_data: Path,
                                                        tmp_path: Path) -> None:
    """trainer.epochs=2 with no max_steps: two passes of the train split, eval at the end."""
    import typer

    from stoker.cli.app import build_app, run_click
    from stoker.data.datasets import TokenWindowDataset

    out = tmp_path / "run"
    per_epoch = len(TokenWindowDataset(tiny_data, split="train", seq_len=64)) // 64
    code = run_click(typer.main.get_command(build_app()), [
        "train", "gpt-char", *tiny_overrides(tiny_data, out, "data.seq_len=64",
                                             "data.batch_size=64"),
        "trainer.max_steps=null", "trainer.epochs=2", "trainer.eval_every=1000",
        "checkpoint.every_steps=1000", "--yes"], prog_name="stoker")
    assert code == 0, capsys.readouterr().err
    recs = read_metrics(out)
    steps = [r["step"] for r in recs if "loss" in r]
    assert 2 <= per_epoch and steps == list(range(1, 2 * per_epoch + 1))
    assert [r["step"] for r in recs if "eval/loss" in r] == [2 * per_epoch]
    assert (out / "checkpoints" / f"step-{2 * per_epoch:08d}" / "COMMITTED").exists()


@pytest.fixture(scope="module")
def tiny_bpe_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer (vocab 300) trained on the tiny corpus, and data with it."""
    from train_helpers import tiny_corpus_text

    from stoker.data.prepare import prepare
    from stoker.data.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("bpe")
    src = root / "corpus.txt"
    src.write_text(tiny_corpus_text(), encoding="utf-8")
    tok = train_tokenizer([src.read_text(encoding="utf-8")], type="bpe", vocab_size=300)
    return prepare([str(src)], root / "data", type="subword", tokenizer=tok,
                   split_ratios=(0.9, 0.1, 0.0), workers=1)


def test_gpt_bpe_trains_on_bpe_data_and_generates(stoker_cmd, tiny_bpe_data: Path,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "bpe"
    meta = json.loads((tiny_bpe_data / "metadata.json").read_text())
    run_cli(stoker_cmd, "train", "gpt-bpe", *tiny_overrides(tiny_bpe_data, out),
            "trainer.max_steps=6", "trainer.eval_every=6", "--yes", check=True)
    recs = read_metrics(out)
    losses = [r["loss"] for r in recs if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert any("eval/perplexity" in r for r in recs)
    ckpt = out / "checkpoints" / "step-00000006" / "model.safetensors"
    from safetensors.torch import load_file

    assert load_file(ckpt)["tok_emb.weight"].shape[0] == meta["vocab_size"]
    gen = run_cli(stoker_cmd, "generate", "text", "--checkpoint", str(out), "--prompt", "def ",
                  "-n", "8", check=True)
    assert gen.stdout.startswith("def ")


def test_ddp_with_dropout_pause_then_resume_is_bitwise_equal(tiny_data: Path,
                                                            tmp_path: Path) -> None:
    """Ranks are seeded alike and draw alike, so rank 0's saved RNG state is every rank's:
    a DDP run with dropout, paused at step 3 and resumed, equals an uninterrupted one."""
    from safetensors.torch import load_file

    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")

    def run(out: Path, *extra: str) -> None:
        proc = subprocess.run(
            [str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "stoker", "train",
             "gpt-char", *tiny_overrides(tiny_data, out, "data.batch_size=4", *DIST_COMMON),
             "model.dropout=0.2", *extra, "--yes"],
            capture_output=True, text=True, env=env, timeout=240, start_new_session=True,
            check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]

    def losses(out: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in read_metrics(out) if "loss" in r]

    whole, paused = tmp_path / "whole", tmp_path / "paused"
    run(whole)
    run(paused, "trainer.stop_after_steps=3")
    run(paused)
    assert losses(paused) == losses(whole)
    a = load_file(whole / "checkpoints" / "step-00000006" / "model.safetensors")
    b = load_file(paused / "checkpoints" / "step-00000006" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
