"""Stopping on a signal at a step boundary: SIGINT, SIGTERM (Slurm preemption), SIGUSR1.

A signal only sets a flag; the training loop checks it after each optimizer step, saves a
checkpoint and raises :class:`~stoker.errors.Interrupted`, so a run stopped by Ctrl-C or a
scheduler resumes exactly. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stoker.errors import Interrupted

__all__ = ["StopSignals"]

_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGUSR1")) if s
)


class StopSignals:
    """The stop signal received so far (``received``), and the handlers that record it."""

    def __init__(self) -> None:
        self.received: int | None = None

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        """Record SIGINT/SIGTERM/SIGUSR1 instead of dying, while the block runs.

        Handlers can only be installed from the main thread; elsewhere this does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.received is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.received = signum

        old = {s: signal.signal(s, handler) for s in _SIGNALS}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def interrupted(self, step: int, run_dir: Path | None) -> Interrupted:
        """The error that ends the run after the checkpoint was saved (exit 128 + signal)."""
        name = signal.Signals(self.received).name if self.received else "signal"
        exc = Interrupted(
            f"{name} received: saved checkpoint at step {step} in {run_dir}; run "
            "the same command again to resume"
        )
        exc.exit_code = 128 + int(self.received or 2)
        return exc
