"""torchrun through the CLI: 2 processes, and a run that changes world size 2 -> 1 -> 2.

The trainer's checkpoint is full-state (model, optimizer, RNG, data position in samples),
so with the same global batch a run resumed at another world size continues the same loss
curve as a run that never stopped.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import tiny_overrides, train_losses

pytestmark = pytest.mark.integration

STOKER = str(Path(sys.executable).with_name("stoker"))
# no dropout: runs at different world sizes draw different masks (see test_recipes_and_ddp)
COMMON = ["trainer.max_steps=9", "trainer.eval_every=3", "checkpoint.every_steps=3",
          "model.dropout=0.0"]
TORCHRUN2 = ["executor=torchrun", "executor.nproc_per_node=2", "data.batch_size=4"]


def train(data: Path, out: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([STOKER, "train", "gpt-char", *tiny_overrides(data, out, *COMMON),
                           *extra, "--yes"], cwd=out.parent, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_world_size_2_then_1_then_2_continues_the_loss_curve(tiny_data: Path, tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    env = {**env, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    train(tiny_data, ref, env, "data.batch_size=8")  # one process, global batch 8

    run = tmp_path / "run"
    first = train(tiny_data, run, env, *TORCHRUN2, "trainer.stop_after_steps=3")
    assert "launched experiment" in first.stderr  # followed in the foreground until it ended
    assert "stopped after step 3" in first.stdout
    [command] = (Path(env["STOKER_HOME"]) / "experiments").glob("*/train/command.txt")
    assert "-m torch.distributed.run --nproc_per_node 2 --nnodes 1 --standalone -m stoker " \
           "train" in command.read_text()
    train(tiny_data, run, env, "data.batch_size=8", "trainer.stop_after_steps=6")  # 1 process
    last = train(tiny_data, run, env, *TORCHRUN2)  # back at 2
    assert "finished at step 9" in last.stdout

    got, want = train_losses(run), train_losses(ref)
    assert sorted(got) == list(range(1, 10))
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-5, abs=1e-6), step
