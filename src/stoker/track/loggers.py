"""Metric loggers: where training numbers go.

``metrics.jsonl`` (one JSON object per line, always on) is the record a user can grep, diff
and load with pandas; TensorBoard, W&B and MLflow are views on the same numbers. The trainer
calls one :class:`FanOutLogger` built by :func:`make_loggers`; only rank zero logs (that is
the caller's job).

Resume safety: a resumed run restarts from its last checkpoint, so steps after that
checkpoint are trained (and logged) again. Loggers take ``resume_step`` and drop whatever
they hold after it, so the files of a resumed run have no duplicated steps.

Metric names: the trainer's names (``loss``, ``lr``, ``lr/group0``, ``eval/loss``...) are
what ``metrics.jsonl``, TensorBoard and W&B record (``/`` groups their charts).
:func:`metric_name` is the one place a backend gets another name, and only MLflow does: its
file store keeps each metric in a file whose path is the name, so ``lr`` (a file) and
``lr/group0`` (a file in a folder ``lr``) cannot both exist. MLflow gets ``/`` as ``.``
(``lr.group0``, ``eval.loss``) and any character it refuses as ``_``.
"""
from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stoker.errors import UserError

__all__ = [
    "LOGGERS",
    "FanOutLogger",
    "JsonlLogger",
    "MetricLogger",
    "TensorBoardLogger",
    "make_loggers",
    "metric_name",
    "truncate_jsonl_after",
]


@runtime_checkable
class MetricLogger(Protocol):
    """What the trainer needs from a logger.

    Optional extras a logger may define: ``log_text(name, text, step)`` (sample text) and
    ``log_config(config)``; the fan-out calls them only on loggers that have them.
    """

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


_MLFLOW_REFUSED = re.compile(r"[^A-Za-z0-9_\-. :]")


def metric_name(backend: str, name: str) -> str:
    """The name metric ``name`` gets in ``backend`` (see the module docstring)."""
    if backend == "mlflow":
        return _MLFLOW_REFUSED.sub("_", name.replace("/", "."))
    return name


def _to_float(v: Any) -> float:
    if hasattr(v, "item"):
        v = v.item()
    return float(v)


def _json_number(v: float) -> float | str:
    # strict JSON has no NaN/Infinity: spell them as strings so every tool can read the file
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def truncate_jsonl_after(path: str | os.PathLike[str], step: int) -> int:
    """Rewrite a JSONL file keeping whole lines whose ``step`` is <= ``step``.

    Lines without a step are kept; a torn last line (killed mid-write) and unparseable
    lines are dropped. The rewrite is atomic (temp file, fsync, rename). Returns the
    number of lines dropped.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        if not line.endswith("\n"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > step:
            continue
        kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        from stoker.atomic import atomic_write_text

        atomic_write_text(path, "".join(kept))
    return dropped


class JsonlLogger:
    """Append ``{"step": N, ...metrics}`` lines to ``run_dir/metrics.jsonl``, flushed per log.

    ``resume_step``: drop lines with a step after it (they will be logged again by the
    resumed run). A torn last line (the process was killed mid-write) is always dropped.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        filename: str = "metrics.jsonl",
        resume_step: int | None = None,
    ):
        self.path = Path(run_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if resume_step is not None:
                self.truncate_after(resume_step)
            else:
                self._drop_torn_tail()
        self._f = open(self.path, "a", encoding="utf-8")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        record: dict[str, Any] = {"step": int(step)}
        for k, v in metrics.items():
            if k != "step":
                record[k] = _json_number(_to_float(v))
        self._f.write(json.dumps(record, allow_nan=False) + "\n")
        self._f.flush()

    def truncate_after(self, step: int) -> int:
        """Keep only whole lines with ``step <= step``; atomic. Returns lines dropped."""
        if hasattr(self, "_f"):
            self._f.flush()
        dropped = truncate_jsonl_after(self.path, step)
        if dropped and hasattr(self, "_f"):  # keep appending to the rewritten file
            self._f.close()
            self._f = open(self.path, "a", encoding="utf-8")
        return dropped

    def _drop_torn_tail(self) -> None:
        with open(self.path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            # find the last newline and cut after it
            pos = size
            while pos > 0:
                step = min(4096, pos)
                pos -= step
                f.seek(pos)
                chunk = f.read(step)
                i = chunk.rfind(b"\n")
                if i >= 0:
                    f.truncate(pos + i + 1)
                    return
            f.truncate(0)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class TensorBoardLogger:
    """Scalars (and sample text) to ``run_dir/tensorboard/`` via torch's SummaryWriter.

    On resume, events after ``resume_step`` are purged (TensorBoard's ``purge_step``), so
    the curves have no overlapping tail.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        resume_step: int | None = None,
        flush_secs: int = 10,
    ):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # pragma: no cover - tensorboard is a core dependency
            raise UserError(
                f"the tensorboard logger needs the tensorboard package ({exc}); "
                "install it with: pip install tensorboard"
            ) from exc
        self.log_dir = Path(log_dir) if log_dir is not None else Path(run_dir) / "tensorboard"
        purge = resume_step + 1 if resume_step is not None else None
        self._w = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge, flush_secs=flush_secs)
        if config is not None and resume_step is None:
            self.log_config(config)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for k, v in metrics.items():
            self._w.add_scalar(k, _to_float(v), global_step=int(step))

    def log_text(self, name: str, text: str, step: int) -> None:
        # TensorBoard renders text as markdown: fence it so code samples keep their layout
        self._w.add_text(name, "```\n" + text + "\n```", global_step=int(step))

    def log_config(self, config: Mapping[str, Any]) -> None:
        body = json.dumps(config, indent=2, default=str, sort_keys=True)
        self._w.add_text("config", "```\n" + body + "\n```", global_step=0)

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


class FanOutLogger:
    """Send every call to several loggers; metric values are converted to float once."""

    def __init__(self, loggers: Mapping[str, MetricLogger]):
        self.loggers: dict[str, MetricLogger] = dict(loggers)

    def __getitem__(self, name: str) -> MetricLogger:
        return self.loggers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.loggers

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        values = {k: _to_float(v) for k, v in metrics.items()}
        for lg in self.loggers.values():
            lg.log(values, step)

    def log_text(self, name: str, text: str, step: int) -> None:
        for lg in self.loggers.values():
            fn = getattr(lg, "log_text", None)
            if fn is not None:
                fn(name, text, step)

    def close(self) -> None:
        """Close every logger, even when one fails; then raise the first failure."""
        first: BaseException | None = None
        for lg in self.loggers.values():
            try:
                lg.close()
            except Exception as exc:  # re-raised below after the others are closed
                first = first or exc
        if first is not None:
            raise first


LOGGERS: dict[str, Any] = {
    "jsonl": JsonlLogger,
    "tensorboard": TensorBoardLogger,
    "wandb": "stoker.track.wandb_logger:WandbLogger",
    "mlflow": "stoker.track.mlflow_logger:MlflowLogger",
}

_EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}


def _resolve(name: str) -> Any:
    target = LOGGERS[name]
    if not isinstance(target, str):
        return target
    mod_name, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        extra = _EXTRAS.get(name)
        hint = f" Install it with: pip install 'stoker[{extra}]'." if extra else ""
        raise UserError(f"logger {name!r} cannot be loaded: {exc}.{hint}") from exc
    return getattr(mod, attr)


def _accepts(cls: Any, param: str) -> bool:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return param in sig.parameters


def make_loggers(
    names: str | Sequence[str] | Mapping[str, Mapping[str, Any] | None] | None,
    run_dir: str | os.PathLike[str],
    config: Mapping[str, Any] | None,
    *,
    resume_step: int | None = None,
) -> FanOutLogger:
    """Build the loggers named in ``names`` (plus ``jsonl``, which is always on).

    ``names`` is a list (``["tensorboard", "wandb"]``), a comma-separated string, or a
    mapping of name -> options passed to that logger's constructor. ``resume_step`` is
    given to loggers whose constructor takes it, so their record ends at the resumed step.
    Loggers get ``config`` with the values of secret-looking keys masked
    (:mod:`stoker.config.secrets`): a tracker is a place to show a run, not to keep its keys.
    """
    from stoker.config.secrets import mask_tree

    if names is None:
        spec: dict[str, dict[str, Any]] = {}
    elif isinstance(names, str):
        spec = {n.strip(): {} for n in names.split(",") if n.strip()}
    elif isinstance(names, Mapping):
        spec = {str(k): dict(v or {}) for k, v in names.items()}
    else:
        spec = {str(n): {} for n in names}
    unknown = [n for n in spec if n not in LOGGERS]
    if unknown:
        raise UserError(
            f"unknown logger{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid loggers are: {', '.join(LOGGERS)}"
        )
    spec = {"jsonl": spec.pop("jsonl", {}), **spec}
    built: dict[str, MetricLogger] = {}
    shown = mask_tree(dict(config or {}))
    try:
        for name, options in spec.items():
            cls = _resolve(name)
            kwargs = dict(options)
            if resume_step is not None and _accepts(cls, "resume_step"):
                kwargs.setdefault("resume_step", resume_step)
            built[name] = cls(Path(run_dir), dict(shown), **kwargs)
    except BaseException:
        for lg in built.values():
            lg.close()
        raise
    return FanOutLogger(built)
