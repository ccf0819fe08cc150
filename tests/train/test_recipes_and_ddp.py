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


@pytest.mark.skipif(pytest.importorskip("sklearn") is None, reason="vision extra")
def test_digits_cnn_reaches_useful_accuracy_and_eval_reports_it(stoker_cmd, tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    run_cli(stoker_cmd, "train", "digits-cnn", f"output_dir={out}", "trainer.max_steps=60",
            "trainer.eval_every=30", "checkpoint.every_steps=30", "loggers=[jsonl]",
            "register_artifact=false", "trainer.num_threads=1", "--yes", check=True)
    acc = [r["eval/accuracy"] for r in read_metrics(out) if "eval/accuracy" in r]
    assert len(acc) == 2 and acc[-1] > 0.8
    ev = run_cli(stoker_cmd, "eval", str(out), check=True)
    assert "valid/accuracy" in ev.stdout


def test_ddp_two_processes_match_one_process_at_the_same_global_batch(
        tiny_data: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["trainer.max_steps=6", "trainer.eval_every=3", "checkpoint.every_steps=3"]
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli([str(Path(sys.executable).with_name("stoker"))], "train", "gpt-char",
            *tiny_overrides(tiny_data, one, "data.batch_size=8", *common), "--yes", check=True)
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "stoker", "train",
         "gpt-char", *tiny_overrides(tiny_data, two, "data.batch_size=4", *common), "--yes"],
        capture_output=True, text=True, env=env, timeout=240, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        key = "loss" if "loss" in ra else "eval/loss"
        assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6)
    # rank 0 alone wrote: one metrics file, one set of checkpoints, whole samples per step
    assert b[0]["num_samples"] == 8
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-00000003",
                                                                        "step-00000006"]
