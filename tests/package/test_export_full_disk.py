"""`stoker export hf` onto a full disk: exit 1 with a message, nothing half-written.

Through the real CLI on a real full file system (a small tmpfs, as root). safetensors
reports the failed write as a SafetensorError, which used to end in a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import run_cli

from tests._shared.engines import no_engine
from tests._shared.full_disk import fill, small_disk

pytest.importorskip("transformers")
pytestmark = pytest.mark.integration


def test_export_hf_on_a_full_disk(stoker_cmd, gpt_run: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 2048) as disk:
        if disk is None:
            no_engine("a small tmpfs", "mounting one needs root and mount rights")
        fill(disk, 40_000)  # room for the directory and a little, not for the weights
        before = sorted(p.name for p in disk.iterdir())
        out = disk / "hf"
        r = run_cli(stoker_cmd, "export", "hf", "--checkpoint", str(gpt_run), "--output",
                    str(out))
        assert r.returncode == 1, r.stdout + r.stderr
        assert "Traceback" not in r.stderr and "SafetensorError" not in r.stderr, r.stderr
        assert "the disk is full" in r.stderr and str(out) in r.stderr, r.stderr
        assert sorted(p.name for p in disk.iterdir()) == before  # no stage, no half directory
        (disk / "filler").unlink()
        r = run_cli(stoker_cmd, "export", "hf", "--checkpoint", str(gpt_run), "--output",
                    str(out))
        assert r.returncode == 0, r.stderr
        assert (out / "model.safetensors").is_file()
