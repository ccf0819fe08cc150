"""A closed console never costs a run: `stoker train ... | head -1`.

When the reader of stdout or stderr goes away (``head`` exits, a terminal closes, an
``ssh`` session drops), the next write raises ``BrokenPipeError``. In the middle of a
training run that write is a progress line, and the exception ended hours of training with
exit 1 and nothing in the log. :func:`guarded_console` wraps both streams for the run:
the first failed write marks the stream closed, points its file descriptor at
``/dev/null`` (so Python's own flush at exit cannot fail either and turn exit 0 into 120),
and calls ``on_close`` once; the caller logs where the output goes from then on (the run's
``logs/train.log``). Training goes on.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

__all__ = ["GuardedStream", "guarded_console"]

# a reader gone (EPIPE), or the terminal itself gone (EIO after a hang-up)
_CLOSED = (errno.EPIPE, errno.EIO, errno.ECONNRESET)


class GuardedStream:
    """A text stream whose writes cannot fail: after the first failure it is ``closed``
    and drops what it is given. Everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO, name: str,
                 on_close: Callable[[GuardedStream], None] | None = None) -> None:
        self._stream = stream
        self.name = name
        self.closed_by_reader = False
        self._on_close = on_close

    def _lost(self) -> None:
        if self.closed_by_reader:
            return
        self.closed_by_reader = True
        try:  # what is still buffered, and Python's flush at exit, go nowhere quietly
            fd = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(fd, self._stream.fileno())
            finally:
                os.close(fd)
        except (OSError, ValueError, AttributeError):
            pass
        if self._on_close is not None:
            self._on_close(self)

    def _guard(self, call: Callable[[], Any], default: Any) -> Any:
        if self.closed_by_reader:
            return default
        try:
            return call()
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) or exc.errno in _CLOSED:
                self._lost()
                return default
            raise

    def write(self, text: str) -> int:
        return self._guard(lambda: self._stream.write(text), len(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._guard(self._stream.flush, None)

    def isatty(self) -> bool:
        return False if self.closed_by_reader else self._stream.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, errors, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_console(on_close: Callable[[GuardedStream], None]) -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` guarded while the block runs (see the module)."""
    old_out, old_err = sys.stdout, sys.stderr
    if old_out is not None:
        sys.stdout = GuardedStream(old_out, "stdout", on_close)  # type: ignore[assignment]
    if old_err is not None:
        sys.stderr = GuardedStream(old_err, "stderr", on_close)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old_out, old_err
