"""What a user sees while `stoker train` runs: a Rich progress bar on a terminal, periodic
plain lines otherwise (CI logs, files, `| tee`), and the trainer's notes on stderr.

Lives in the CLI because library code never prints; the trainer only calls a callback.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from stoker.train.callbacks import Callback

def _fmt(metrics: dict[str, float]) -> str:
    parts = []
    for k in ("loss", "perplexity", "lr", "grad_norm", "tokens_per_s", "samples_per_s",
              "step_time_s", "data_wait_s", "peak_mem_mb"):
        if k in metrics:
            v = metrics[k]
            parts.append(f"{k}={v:.3g}" if k != "tokens_per_s" else f"{k}={v:,.0f}")
    return "  ".join(parts)


class ProgressCallback(Callback):
    """Rank zero only: a live bar on a TTY, one line per logging step otherwise."""

    def __init__(self, *, quiet: bool = False, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._progress: Any = None
        self._task: Any = None
        self._last_line = 0.0

    def on_fit_start(self, trainer: Any) -> None:
        if not trainer.is_rank_zero or self.quiet:
            return
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=trainer.max_steps, completed=trainer.step, info="")

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if not trainer.is_rank_zero or self.quiet:
            return
        if self._progress is not None:
            info = f"loss {metrics['loss']:.4f}"
            if "tokens_per_s" in metrics:
                info += f"  {metrics['tokens_per_s']:,.0f} tok/s"
            self._progress.update(self._task, completed=step, info=info)
        elif step % trainer.recipe.trainer.log_every == 0 or step == trainer.max_steps:
            # a logging step (the trainer adds the global numbers there)
            line = f"step {step}/{trainer.max_steps}  {_fmt(metrics)}"
            if self._console_closed():  # `| head` went away: the run's log file has them
                logging.getLogger("stoker.train").info("%s", line)
                return
            self.stream.write(line + "\n")
            self.stream.flush()

    def _console_closed(self) -> bool:
        """Whether the stream's reader went away (:mod:`stoker.cli.closed_console`)."""
        return bool(getattr(self.stream, "closed_by_reader", False))

    def on_eval_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if not trainer.is_rank_zero or self.quiet:
            return
        self.print(f"eval @ step {step}: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def print(self, line: str) -> None:
        """Print one line of notes: above the live bar while it runs (so it never lands on
        the bar's line or leaves a stale copy of the bar), else on the stream."""
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        elif not self._console_closed():  # else dropped: notes are log records already
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_fit_end(self, trainer: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        self.close()


class _NotesHandler(logging.Handler):
    """The trainer's log records, printed through the progress display (see ``print``)."""

    def __init__(self, progress: ProgressCallback) -> None:
        super().__init__()
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.print(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


@contextlib.contextmanager
def console_logging(progress: ProgressCallback | None = None) -> Iterator[None]:
    """Show the trainer's INFO notes (resuming, checkpoints) on stderr for this command,
    through ``progress`` when given, so notes and the live bar share the terminal."""
    logger = logging.getLogger("stoker.train")
    handler: logging.Handler = (_NotesHandler(progress) if progress is not None
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
