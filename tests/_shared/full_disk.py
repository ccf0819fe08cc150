"""A real full disk for tests: a small tmpfs mounted as root, filled up (ENOSPC).

Tests that need it skip with the reason where mounting is not permitted (not root, no
`mount`, a container without the capability)."""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path | None]:
    """A real small file system (tmpfs) at ``path``; None when mounting is not permitted."""
    path.mkdir(parents=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                               str(path)], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is None or done.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def fill(disk: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system up, then give back ``leave_bytes``."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave_bytes))
    return filler
