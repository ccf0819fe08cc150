"""`stoker pack` interrupted at any moment: it ends promptly and leaves no temp file, and a
temp file left by a killed pack is removed by the next one.

Through the real CLI on a moderately sized model (~28 MB of weights), so the write phase is
long enough for some of the signals to land in it (the Ctrl-C that once hung in the
checksum thread's shutdown; the SIGTERM and kill -9 that left a temp file forever)."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from train_helpers import run_cli, tiny_overrides

pytestmark = pytest.mark.integration
TRIALS = 10


@pytest.fixture(scope="module")
def big_run(char_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    out = tmp_path_factory.mktemp("bigpack") / "run"
    exe = [str(Path(sys.executable).with_name("stoker"))]
    run_cli(exe, "train", "gpt-char", *tiny_overrides(char_data, out), "model.dim=384",
            "model.n_layers=4", "model.n_heads=4", "model.n_kv_heads=4", "model.dropout=0.0",
            "trainer.max_steps=1", "trainer.eval_every=null", "checkpoint.every_steps=1",
            "--yes", check=True)
    return out


def _temps(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.name.endswith(".tmp"))


def _start(stoker_cmd: list[str], run: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([*stoker_cmd, "pack", "--checkpoint", str(run), "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigint_at_any_moment_exits_130_promptly_and_leaves_nothing(
        stoker_cmd, big_run: Path, tmp_path: Path) -> None:
    where = tmp_path / "out"
    where.mkdir()
    t0 = time.monotonic()
    full = _start(stoker_cmd, big_run, where / "whole.stoker")
    full.communicate(timeout=300)
    assert full.returncode == 0
    duration = time.monotonic() - t0
    interrupted = 0
    for i in range(TRIALS):
        out = where / f"m{i}.stoker"
        proc = _start(stoker_cmd, big_run, out)
        time.sleep(0.6 + (duration - 0.6) * i / TRIALS)  # spread over the whole pack
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=5)  # a hang guard, not a timing claim
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"pack hung after SIGINT at {i}/{TRIALS} of its duration")
        if proc.returncode == 0:  # it had finished before the signal: a whole archive
            assert out.is_file() and "Traceback" not in err, err
        else:
            interrupted += 1
            assert proc.returncode == 130, f"trial {i}: exit {proc.returncode}: {err}"
            assert "Traceback" not in err, err
            assert not out.exists()
        assert _temps(where) == [], f"trial {i}: {_temps(where)}"
    assert interrupted >= 3, "the signals should land while the pack runs (not a vacuous test)"


def test_sigterm_removes_the_temp_and_a_killed_packs_temp_is_removed_next_time(
        stoker_cmd, big_run: Path, tmp_path: Path) -> None:
    where = tmp_path / "out"
    where.mkdir()
    out = where / "m.stoker"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = _start(stoker_cmd, big_run, out)
        deadline = time.monotonic() + 120
        while not _temps(where) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # until the archive's temp file exists: mid-write
        assert proc.poll() is None, "pack ended before its write could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        if sig == signal.SIGTERM:
            assert proc.returncode == 143 and "SIGTERM" in err, err
            assert _temps(where) == [] and not out.exists()
    left = _temps(where)
    assert left, "kill -9 leaves the temp file (no cleanup can run)"
    planted = where / ".m.stoker.zz99yy88.tmp"  # and one from an earlier kill
    planted.write_bytes(b"half an archive")
    r = run_cli(stoker_cmd, "pack", "--checkpoint", str(big_run), "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert _temps(where) == [] and out.is_file()
