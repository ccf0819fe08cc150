"""A closed stdout/stderr pipe (`stoker train ... 2>&1 | head -1`) never costs a run.

Through the real CLI: the output pipe is closed after its first line; the run still trains
to max_steps, exits 0, and its logs/train.log says what happened and holds the progress
lines the console could no longer show."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from train_helpers import tiny_overrides

pytestmark = pytest.mark.integration


def test_training_goes_on_when_its_output_pipe_closes(stoker_cmd, tiny_data: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
         "trainer.max_steps=30", "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # like `head -1`: one line, then the reader is gone
    assert first
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert max(steps) == 30
    assert (out / "checkpoints" / "step-00000030" / "COMMITTED").is_file()
    log = (out / "logs" / "train.log").read_text()
    assert "was closed (its reader went away); training goes on" in log, log
    assert "step 30/30" in log, log  # the progress lines went to the log instead
