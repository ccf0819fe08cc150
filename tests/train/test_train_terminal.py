"""`stoker train` on a real pseudo-terminal, read back through a terminal emulator (pyte):
the notes printed as a run ends (eval, "saved checkpoint") get lines of their own above the
progress bar, and the finished bar is on the screen once."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from train_helpers import tiny_overrides

pytestmark = pytest.mark.integration

COLS, ROWS = 140, 60


def run_on_pty(argv: list[str], timeout: float = 240) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS),
               OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), bytes(out)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def screen_of(raw: bytes) -> list[str]:
    import pyte

    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)
    return [line.rstrip() for line in screen.display if line.strip()]


def test_end_of_run_notes_do_not_land_on_the_progress_bar(stoker_cmd, tiny_data: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, raw = run_on_pty([*stoker_cmd, "train", "gpt-char",
                            *tiny_overrides(tiny_data, out, "trainer.max_steps=12"), "--yes"])
    lines = screen_of(raw)
    shown = "\n".join(lines)
    assert code == 0, shown
    bars = [ln for ln in lines if ln.startswith("train ") and "/12" in ln]
    assert len(bars) == 1, shown  # the finished bar, once
    assert "12/12" in bars[0] and bars[0].endswith("tok/s"), shown
    saved = [ln for ln in lines if "saved checkpoint" in ln]
    assert saved and all(ln.startswith("saved checkpoint") for ln in saved), shown
    evals = [ln for ln in lines if "eval @ step" in ln]
    assert evals and all(ln.startswith("eval @ step") for ln in evals), shown
    assert any(ln.startswith("finished at step 12") for ln in lines), shown
