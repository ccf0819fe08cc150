"""CheckpointManager: save, find, load and prune the step directories of one run.

A checkpoint is saved only when its model and optimizer state are finite (one fused pass
over their tensors, :func:`~.tensors.nonfinite`); the marker records ``"finite": true``,
so "the last finite checkpoint" (:meth:`CheckpointManager.latest_finite`) is a lookup, and a
NaN blow-up can never become the checkpoint a re-run resumes from.

Saving is crash-safe: files are written into a temporary directory beside the final one,
fsynced, the directory is renamed to ``step-NNNNNNNN``, and only then is the commit marker
written (atomically, with :mod:`stoker.atomic`). "Latest" is the highest step with a valid
marker, so a half-written checkpoint is invisible, and pruning removes a step's marker
before its files so no crash can leave a deleted checkpoint looking committed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stoker.atomic import atomic_write_bytes, fsync_dir
from stoker.errors import CheckpointError, CheckpointSaveError, NonFiniteError
from stoker.train.checkpoint.checksums import ALGORITHMS
from stoker.train.checkpoint.codec import encode_state
from stoker.train.checkpoint.layout import (
    FORMAT,
    MARKER,
    STATE_FILE,
    STEP_RE,
    TMP_PREFIX,
    TRASH_PREFIX,
    committed,
    find_latest,
    is_committed,
    step_dir_name,
)
from stoker.train.checkpoint.load import FINITE_KEYS, load_checkpoint
from stoker.train.checkpoint.tensors import (
    describe_nonfinite,
    nonfinite,
    write_bytes,
    write_safetensors,
)

__all__ = ["CheckpointInfo", "CheckpointManager"]


@dataclass(frozen=True)
class CheckpointInfo:
    """One committed checkpoint: where, which step, which metrics it was saved with."""

    step: int
    path: Path
    metrics: dict[str, float]


class CheckpointManager:
    """Save, find, load and prune the step directories of one run.

    Args:
        root: the ``checkpoints/`` directory of a run (created on first save).
        keep_last: how many of the most recent checkpoints to keep (None: all).
        keep_best: how many of the best checkpoints by ``best_metric`` to keep besides.
        best_metric: the metrics key (passed to :meth:`save`) that ranks checkpoints.
        best_mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        fsync: flush files and directories to stable storage (off only for benchmarks or
            throwaway runs: without it a power cut can lose a "committed" checkpoint).
        checksum: ``"crc32"`` (default, fast), ``"sha256"``, or ``"none"``.

    The latest and the best checkpoint are never deleted.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        keep_last: int | None = None,
        keep_best: int | None = None,
        best_metric: str | None = None,
        best_mode: Literal["min", "max"] = "min",
        fsync: bool = True,
        checksum: Literal["crc32", "sha256", "none"] = "crc32",
    ):
        if keep_last is not None and keep_last < 0:
            raise CheckpointError(f"checkpoint.keep_last must be >= 0 or null, got {keep_last}")
        if keep_best is not None and keep_best < 0:
            raise CheckpointError(f"checkpoint.keep_best must be >= 0 or null, got {keep_best}")
        if keep_best and not best_metric:
            raise CheckpointError(
                "checkpoint.keep_best needs checkpoint.best_metric (the metric key that ranks "
                "checkpoints, e.g. best_metric=val/loss)"
            )
        if best_mode not in ("min", "max"):
            raise CheckpointError(f"checkpoint.best_mode must be 'min' or 'max', got {best_mode!r}")
        if checksum not in ALGORITHMS:
            raise CheckpointError(
                f"checkpoint.checksum must be 'crc32', 'sha256' or 'none', got {checksum!r}"
            )
        self.root = Path(root)
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.fsync = fsync
        self.checksum = checksum

    # -- queries ---------------------------------------------------------------------

    def path_for(self, step: int) -> Path:
        return self.root / step_dir_name(step)

    def list(self) -> list[Path]:
        """Committed checkpoints, oldest first."""
        return [p for _, p, _ in committed(self.root)]

    def infos(self) -> list[CheckpointInfo]:
        """Committed checkpoints with their steps and metrics, oldest first."""
        return [
            CheckpointInfo(s, p, _metrics_from_json(m.get("metrics")))
            for s, p, m in committed(self.root)
        ]

    def latest(self) -> Path | None:
        """Highest step with a valid commit marker; half-written checkpoints are invisible."""
        return find_latest(self.root)

    def latest_finite(self) -> Path | None:
        """Highest step whose marker says its model and optimizer state were finite."""
        for _, p, marker in reversed(committed(self.root)):
            if marker.get("finite") is True:
                return p
        return None

    def best(self) -> Path | None:
        """The best checkpoint by ``best_metric`` (None without a metric or values)."""
        ranked = self._ranked(self.infos())
        return ranked[0].path if ranked else None

    # -- load ------------------------------------------------------------------------

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        map_location: Any = "cpu",
        keys: Iterable[str] | None = None,
        allow_nonfinite: bool = False,
    ) -> dict[str, Any]:
        """See :func:`~stoker.train.checkpoint.load.load_checkpoint`."""
        return load_checkpoint(path, map_location=map_location, keys=keys,
                               allow_nonfinite=allow_nonfinite)

    def load_latest(
        self, *, map_location: Any = "cpu", keys: Iterable[str] | None = None
    ) -> dict[str, Any] | None:
        """Load :meth:`latest` (None when there is none). A corrupted latest raises."""
        latest = self.latest()
        if latest is None:
            return None
        return self.load(latest, map_location=map_location, keys=keys)

    # -- save ------------------------------------------------------------------------

    def save(
        self, step: int, state: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> Path:
        """Write ``state`` as ``root/step-NNNNNNNN/`` atomically, then prune old ones.

        Raises CheckpointError (and leaves every earlier checkpoint as it was, with no
        partial directory visible) when the state holds an unsupported value, and
        CheckpointSaveError (exit 1; still a CheckpointError) when the disk fills up or fails.
        """
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative int, got {step!r}")
        metrics = {k: _metric_float(k, v) for k, v in (metrics or {}).items()}
        final = self.path_for(step)

        # Encode first: an unsupported value fails before anything touches the disk.
        state_bytes, sinks = encode_state(state)
        self._check_finite(step, sinks)  # NaN/inf weights are never saved

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._save_error(step, exc, None) from exc
        self._sweep_leftovers()
        tmp = self.root / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        current: str | None = None
        try:
            tmp.mkdir()
            files: dict[str, Any] = {}
            for sink in sinks:
                current = sink.fname
                files[sink.fname] = write_safetensors(
                    tmp / sink.fname, sink.tensors, fsync=self.fsync, algo=self.checksum
                )
            current = STATE_FILE
            files[STATE_FILE] = write_bytes(
                tmp / STATE_FILE, state_bytes, fsync=self.fsync, algo=self.checksum
            )
            current = None
            if self.fsync:
                fsync_dir(tmp)
            if final.exists():  # re-saving a step (e.g. the end-of-run save): retire the old one
                self._discard(final)
            # A directory rename, not stoker.atomic: the step's files are published together
            # by renaming the directory that holds them; the marker below commits it.
            os.rename(tmp, final)
            if self.fsync:
                fsync_dir(self.root)
            current = MARKER
            marker = {
                "format": FORMAT,
                "step": step,
                "checksum": self.checksum,
                "files": files,
                "metrics": {k: _metric_json(v) for k, v in metrics.items()},
                "finite": True,  # checked above: model and optimizer hold no NaN/inf
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            self._write_marker(final, marker)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists() and not is_committed(final):
                shutil.rmtree(final, ignore_errors=True)
            raise self._save_error(step, exc, current) from exc
        self.prune()
        return final

    def _check_finite(self, step: int, sinks: Iterable[Any]) -> None:
        """Raise NonFiniteError naming the tensors when model/optimizer hold NaN or inf."""
        for sink in sinks:
            if sink.key not in FINITE_KEYS:
                continue
            bad = nonfinite(sink.tensors)
            if bad:
                last = self.latest_finite()
                details = "; ".join(f"{sink.fname} tensor '{n}' ({describe_nonfinite(sink.tensors[n])})"
                                    for n in bad)
                keep = (f"The last finite checkpoint is {last}; resume from it with resume={last} "
                        "after lowering optim.lr or enabling gradient clipping (trainer.clip)."
                        if last is not None else "No finite checkpoint was saved before it.")
                raise NonFiniteError(
                    f"refusing to save checkpoint {step_dir_name(step)} in {self.root}: its "
                    f"{sink.key} state is not finite: {details}. {keep}")

    def _write_marker(self, final: Path, marker: dict[str, Any]) -> None:
        data = json.dumps(marker, indent=1, allow_nan=False).encode()
        atomic_write_bytes(final / MARKER, data, fsync=self.fsync)

    def _save_error(self, step: int, exc: OSError, current: str | None) -> CheckpointSaveError:
        import errno

        prev = self.latest()
        what = f" while writing {current}" if current else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            cause = f"the disk is full{what} ({exc.strerror})"
            fix = "Free space on that disk, lower checkpoint.keep_last, or point output_dir elsewhere."
        elif exc.errno == errno.EFBIG:
            cause = f"a file size limit was hit{what} ({exc.strerror}; `ulimit -f` or the file system's maximum file size)"
            fix = "Raise the file size limit (ulimit -f) or point output_dir at another file system."
        else:
            cause = f"{exc.strerror or exc}{what}"
            fix = "Check that the directory is writable and the disk is healthy."
        kept = (
            f"The previous checkpoint {prev} is intact."
            if prev is not None
            else "No earlier checkpoint exists."
        )
        return CheckpointSaveError(  # the run failed (exit 1); the input was fine
            f"could not save checkpoint {step_dir_name(step)} in {self.root}: {cause}. "
            f"Nothing partial was left behind. {kept} {fix}"
        )

    # -- pruning -----------------------------------------------------------------------

    def _ranked(self, infos: list[CheckpointInfo]) -> list[CheckpointInfo]:
        if not self.best_metric:
            return []
        scored = [
            i
            for i in infos
            if self.best_metric in i.metrics and not math.isnan(i.metrics[self.best_metric])
        ]
        # best first; on ties the newer checkpoint wins
        sign = 1.0 if self.best_mode == "min" else -1.0
        return sorted(scored, key=lambda i: (sign * i.metrics[self.best_metric], -i.step))

    def prune(self) -> list[Path]:
        """Delete checkpoints outside keep_last/keep_best; never the latest or the best."""
        infos = self.infos()
        if not infos or self.keep_last is None:
            return []
        keep = {infos[-1].path}  # the latest
        if self.keep_last:
            keep.update(i.path for i in infos[-self.keep_last :])
        ranked = self._ranked(infos)
        if ranked:
            keep.add(ranked[0].path)
            if self.keep_best:
                keep.update(i.path for i in ranked[: self.keep_best])
        removed = []
        for i in infos:
            if i.path not in keep:
                self._discard(i.path)
                removed.append(i.path)
        return removed

    def _discard(self, path: Path) -> None:
        """Remove a step directory so that no crash can leave it looking committed."""
        try:
            (path / MARKER).unlink()
        except FileNotFoundError:
            pass
        trash = self.root / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)  # a directory rename: it takes the step out of sight at once
        shutil.rmtree(trash, ignore_errors=True)

    def _sweep_leftovers(self) -> None:
        """Remove temp/trash dirs and uncommitted step dirs left by a crashed save."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for e in entries:
            if e.name.startswith((TMP_PREFIX, TRASH_PREFIX)) and e.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)
            elif STEP_RE.match(e.name) and e.is_dir() and not (Path(e.path) / MARKER).exists():
                shutil.rmtree(e.path, ignore_errors=True)


def _metric_json(v: float) -> float | str:
    # the marker is strict JSON: an infinite perplexity is spelled "inf"
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _metrics_from_json(raw: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            try:
                out[str(k)] = float(v)
            except (TypeError, ValueError):
                continue
    return out


def _metric_float(key: str, v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint metric {key!r} must be a number, got {v!r}") from None
