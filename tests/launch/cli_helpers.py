"""The real CLI as the launch tests drive it: run a command, read the launched id, list the
job store, wait for a condition."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

STOKER = str(Path(sys.executable).with_name("stoker"))


def stoker(*args: str, cwd: Path, env: dict[str, str], timeout: float = 300,
           python: bool = False) -> subprocess.CompletedProcess:
    argv = [sys.executable, *args] if python else [STOKER, *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def launched_id(proc: subprocess.CompletedProcess) -> str:
    m = re.search(r"launched experiment (\S+)", proc.stderr)
    assert m, proc.stdout + proc.stderr
    return m.group(1)


def experiments(env: dict[str, str]) -> list[str]:
    root = Path(env["STOKER_HOME"]) / "experiments"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def wait_for(pred, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
