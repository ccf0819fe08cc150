"""A secret from the environment, through the real CLI (item 7 of issue 14): the run gets
the value, but no file of the run directory, checkpoint, tracker log or published artifact
holds it, the --dryrun table masks it, and a resumed run resolves it again."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from train_helpers import run_cli, tiny_overrides

pytestmark = pytest.mark.integration

SECRET = "hunter2-s3cr3t-value"


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_env_secret_is_used_but_never_written(stoker_cmd, tiny_data: Path, tmp_path: Path) -> None:
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, MYSECRET=SECRET, STOKER_HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p),
               PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    args = ["train", "gpt-char",
            *[o for o in tiny_overrides(tiny_data, out) if o != "register_artifact=false"],
            "loggers=[jsonl,tensorboard]", "+callbacks.notify._target_=_slow_steps.Notifier",
            "+callbacks.notify.api_token=${oc.env:MYSECRET}",
            "+callbacks.notify.expect_env=MYSECRET"]
    dry = run_cli(stoker_cmd, *args, "trainer.max_steps=5", "--dryrun", env=env, check=True)
    assert SECRET not in dry.stdout and "callbacks.notify.api_token" in dry.stdout
    assert "****" in dry.stdout
    run_cli(stoker_cmd, *args, "trainer.max_steps=5", "--yes", env=env, check=True)
    assert "${oc.env:MYSECRET}" in (out / "config.yaml").read_text()
    # resumed from its own config.yaml: the run resolves the value again (Notifier checks)
    more = run_cli(stoker_cmd, "train", str(out / "config.yaml"), "trainer.max_steps=7",
                   "--yes", env=env, check=True)
    assert "resum" in (more.stdout + more.stderr).lower()
    assert (out / "checkpoints" / "step-00000007" / "COMMITTED").exists()
    assert list((out / "tensorboard").rglob("events.*"))
    assert list((tmp_path / "home").rglob("state.json"))  # the published model's checkpoint
    leaks = _files_holding(tmp_path, SECRET.encode())
    assert not leaks, leaks
