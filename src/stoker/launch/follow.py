"""Follow a job's log files as they grow, until the job ends (``stoker exp logs -f``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

__all__ = ["tail"]


def tail(sources: Sequence[tuple[Path, BinaryIO]], *, done: Callable[[], bool] | None = None,
         poll: float = 0.2, offsets: dict[Path, int] | None = None) -> dict[Path, int]:
    """Copy what each file holds beyond its offset to its stream; with ``done``, keep
    copying until ``done()`` is true (checked before each read, so the last lines written
    before the job ended are never lost). Returns the new offsets."""
    offsets = dict(offsets or {})
    while True:
        finished = True if done is None else done()
        for path, stream in sources:
            pos = offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except FileNotFoundError:
                continue
            if data:
                stream.write(data)
                stream.flush()
                offsets[path] = pos + len(data)
        if finished:
            return offsets
        time.sleep(poll)
