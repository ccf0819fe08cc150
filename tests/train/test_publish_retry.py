"""A run that trained to the end but could not publish its model publishes on the re-run.

Through the real CLI on a real full disk (a small tmpfs as the registry): the first run
trains, fails to publish (exit 1, a message), and the same command after freeing space
publishes the model instead of saying "already finished" over a model that never reached
the registry."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from train_helpers import run_cli, tiny_overrides

from tests._shared.engines import no_engine
from tests._shared.full_disk import fill, small_disk

pytestmark = pytest.mark.integration


def test_failed_publish_is_published_by_the_rerun(stoker_cmd, tiny_data: Path,
                                                  tmp_path: Path) -> None:
    from stoker.artifacts.registry import FsspecRegistry

    with small_disk(tmp_path / "disk", 2048) as disk:
        if disk is None:
            no_engine("a small tmpfs", "mounting one needs root and mount rights")
        reg = disk / "reg"
        env = {**os.environ, "STOKER_REGISTRY": str(reg)}
        out = tmp_path / "run"
        args = ["train", "gpt-char", *tiny_overrides(tiny_data, out), "trainer.max_steps=5",
                "register_artifact=true", "--yes"]
        filler = fill(disk, 16_000)
        first = run_cli(stoker_cmd, *args, env=env)
        assert first.returncode == 1, first.stdout + first.stderr  # a failed run, not input
        assert "Traceback" not in first.stderr and "Free space" in first.stderr, first.stderr
        assert (out / "checkpoints" / "step-00000005" / "COMMITTED").is_file()
        assert not (out / "published.json").exists()

        filler.unlink()
        again = run_cli(stoker_cmd, *args, env=env)
        said = again.stdout + again.stderr
        assert again.returncode == 0, said
        assert "published now as art://gpt-char:v1" in said, said
        model = FsspecRegistry(str(reg)).load("art://gpt-char:v1")
        assert model.metadata["checkpoint"] == "step-00000005"
        assert (Path(model.path) / "checkpoint" / "model.safetensors").is_file()
        record = json.loads((out / "published.json").read_text())
        assert [e["uri"] for e in record] == ["art://gpt-char:v1"]

        # once published, a re-run only reports: no second version of the same checkpoint
        third = run_cli(stoker_cmd, *args, env=env)
        assert third.returncode == 0 and "already finished" in third.stdout, third.stderr
        assert "published now" not in third.stdout + third.stderr
        assert [v.version for v in FsspecRegistry(str(reg)).versions("gpt-char")] == [1]


def test_a_run_published_before_the_record_is_not_published_twice(
        stoker_cmd, tiny_data: Path, tmp_path: Path) -> None:
    """Without ``published.json`` (a run from before it existed) the registry is asked."""
    from stoker.artifacts.registry import FsspecRegistry

    reg = tmp_path / "reg"
    env = {**os.environ, "STOKER_REGISTRY": str(reg)}
    out = tmp_path / "run"
    args = ["train", "gpt-char", *tiny_overrides(tiny_data, out), "trainer.max_steps=5",
            "register_artifact=true", "--yes"]
    run_cli(stoker_cmd, *args, env=env, check=True)
    (out / "published.json").unlink()
    again = run_cli(stoker_cmd, *args, env=env, check=True)
    assert "already finished" in again.stdout and "published now" not in again.stdout
    assert [v.version for v in FsspecRegistry(str(reg)).versions("gpt-char")] == [1]
