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

Length: about 670 lines, past 550 because both formats (full state, and DCP shards in
:mod:`.sharded`) and the background writer share one commit path (temp dir, verified file
list, rename, marker last) and one in-flight save; the format-specific writing and reading
live in ``tensors``, ``sharded`` and ``load``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
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


@dataclass
class _Pending:
    """A save whose files are being written; committed by :meth:`CheckpointManager.finish_pending`."""

    step: int
    final: Path
    future: Future[Any]
    tmp: Path | None = None  # sharded: the temp dir every rank writes into
    files: dict[str, Any] = field(default_factory=dict)  # sharded: rank 0's small files
    metrics: dict[str, float] = field(default_factory=dict)
    peak: int | None = None  # sharded: this rank's peak memory growth while saving
    sharded: bool = False


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
        self._pending: _Pending | None = None  # the save in flight (background or sharded)
        self._pool: Any = None  # the writer thread, made on the first background save
        # CPU staging tensors of background saves, reused from one save to the next: a
        # fresh 1 GB copy each time pays its page faults again (2-4x the copy itself)
        self._staging: dict[tuple[str, str], Any] = {}
        self._pg: Any = None  # the process group of DCP's writer thread

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
        self, step: int, state: Mapping[str, Any], metrics: Mapping[str, float] | None = None,
        *, background: bool = False,
    ) -> Path:
        """Write ``state`` as ``root/step-NNNNNNNN/`` atomically, then prune old ones.

        Raises CheckpointError (and leaves every earlier checkpoint as it was, with no
        partial directory visible) when the state holds an unsupported value, and
        CheckpointSaveError (exit 1; still a CheckpointError) when the disk fills up or fails.

        With ``background=True`` the tensors are first copied to CPU (one staging copy;
        training may change the originals at once), and a writer thread writes, commits and
        prunes while the caller goes on; the returned path is committed only after
        :meth:`wait` (or a :meth:`poll` that reports it). At most one save is in flight:
        a new one waits for the previous first. Errors of a background write are raised by
        the next :meth:`save`, :meth:`poll` or :meth:`wait`.
        """
        self._check_step(step)
        metrics = {k: _metric_float(k, v) for k, v in (metrics or {}).items()}
        self.wait()  # at most one save in flight

        # Encode first: an unsupported value fails before anything touches the disk.
        state_bytes, sinks = encode_state(state)
        if not background:
            self._check_finite(step, sinks)  # NaN/inf weights are never saved
            return self._write_full(step, state_bytes, sinks, metrics)
        for sink in sinks:  # the one staging buffer: a CPU copy of every tensor
            sink.tensors = {n: self._stage(sink.key, n, t) for n, t in sink.tensors.items()}
        # The finite check reads the staged copy on the writer thread: training does not
        # wait for it, and a NaN/inf state is still never written (its NonFiniteError comes
        # from the next poll/wait/save).
        future = self._executor().submit(self._check_then_write, step, state_bytes, sinks,
                                         metrics)
        self._pending = _Pending(step, self.path_for(step), future)
        return self.path_for(step)

    def _stage(self, key: str, name: str, tensor: Any) -> Any:
        """A CPU copy of ``tensor`` in this manager's staging buffer (safe to overwrite: the
        previous background write finished before a new save starts)."""
        src = tensor.detach()
        buf = self._staging.get((key, name))
        if buf is None or buf.shape != src.shape or buf.dtype != src.dtype \
                or not buf.is_contiguous():
            buf = self._staging[(key, name)] = src.to("cpu", copy=True).contiguous()
            return buf
        buf.copy_(src)
        return buf

    def _check_then_write(self, step: int, state_bytes: bytes, sinks: list[Any],
                          metrics: dict[str, float]) -> Path:
        self._check_finite(step, sinks)
        return self._write_full(step, state_bytes, sinks, metrics)

    def _write_full(self, step: int, state_bytes: bytes, sinks: list[Any],
                    metrics: dict[str, float]) -> Path:
        """Write the files of a full-state checkpoint into a temp dir, then commit it."""
        tmp = self._make_tmp(step)
        current: str | None = None
        try:
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
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise self._save_error(step, exc, current) from exc
        return self._commit(step, tmp, files, metrics)

    def _make_tmp(self, step: int) -> Path:
        """A fresh temp directory beside the step's final one (leftovers swept first)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._sweep_leftovers()
            tmp = self.root / (f"{TMP_PREFIX}{step_dir_name(step)}-{os.getpid()}-"
                               f"{uuid.uuid4().hex[:8]}")
            tmp.mkdir()
        except OSError as exc:
            raise self._save_error(step, exc, None) from exc
        return tmp

    def _commit(self, step: int, tmp: Path, files: dict[str, Any], metrics: dict[str, float],
                extra: Mapping[str, Any] | None = None) -> Path:
        """Publish a temp dir whose files are all written: fsync, rename, marker, prune.

        The marker, written last, lists ``files`` (relative paths, sizes, checksums)."""
        final = self.path_for(step)
        current: str | None = None
        try:
            if self.fsync:
                for d in sorted({(tmp / f).parent for f in files}, reverse=True):
                    fsync_dir(d)
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
                "finite": True,  # checked before writing: model and optimizer hold no NaN/inf
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **(extra or {}),
            }
            self._write_marker(final, marker)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists() and not is_committed(final):
                shutil.rmtree(final, ignore_errors=True)
            raise self._save_error(step, exc, current) from exc
        self.prune()
        return final

    # -- sharded (DCP) saves -----------------------------------------------------------

    def save_sharded(
        self, step: int, state: Mapping[str, Any], metrics: Mapping[str, float] | None = None,
        *, background: bool = False,
    ) -> Path:
        """Save with every rank writing its own shards of ``model`` and ``optimizer``.

        Collective: every rank of the default process group calls it with its own
        (FSDP2-sharded) state dicts. The tensors under ``model``/``optimizer`` go to
        ``dcp/`` through torch.distributed.checkpoint, each rank writing only its shards;
        rank 0 writes the rest (``state.json``, RNG, ...) as in a full-state checkpoint.
        Every rank then checksums the files it wrote, rank 0 gathers those records, checks
        that every file on disk is accounted for, and only then renames the directory and
        writes the marker listing them all (:meth:`finish_pending`). With
        ``background=True`` DCP stages a CPU copy of this rank's shards and writes from a
        thread; :meth:`poll` (called by every rank at each step) commits once every rank's
        write is done, and :meth:`wait` blocks for it.
        """
        from stoker.train.checkpoint.sharded import (
            DCP_DIR,
            local_tensor,
            measure_peak,
            split_for_dcp,
            write_shards,
        )

        self._check_step(step)
        metrics = {k: _metric_float(k, v) for k, v in (metrics or {}).items()}
        self.wait()  # at most one save in flight (a collective: every rank is here)
        rank, _ = _rank_world()
        skeleton, flat = split_for_dcp(state)

        # NaN/inf on any rank's shard stops every rank (they agree, or the next collective hangs)
        bad = nonfinite({n: local_tensor(t) for n, t in flat.items()
                         if n.split("/", 1)[0] in FINITE_KEYS})
        bad_all = sorted({b for part in _all_gather(bad) for b in part})
        if bad_all:
            last = self.latest_finite()
            keep = (f"The last finite checkpoint is {last}; resume from it with resume={last} "
                    "after lowering optim.lr or enabling gradient clipping (trainer.clip)."
                    if last is not None else "No finite checkpoint was saved before it.")
            raise NonFiniteError(
                f"refusing to save checkpoint {step_dir_name(step)} in {self.root}: sharded "
                f"tensors {bad_all[:5]} hold NaN or inf. {keep}")

        # rank 0: the temp dir and the small files; every rank learns the dir or the error
        prep: tuple[str | None, str | None] = (None, None)
        files: dict[str, Any] = {}
        local_error: BaseException | None = None
        if rank == 0:
            try:
                state_bytes, sinks = encode_state(skeleton)
                tmp = self._make_tmp(step)
                try:
                    for sink in sinks:
                        files[sink.fname] = write_safetensors(
                            tmp / sink.fname, sink.tensors, fsync=self.fsync, algo=self.checksum)
                    files[STATE_FILE] = write_bytes(tmp / STATE_FILE, state_bytes,
                                                    fsync=self.fsync, algo=self.checksum)
                    (tmp / DCP_DIR).mkdir()
                except OSError as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise self._save_error(step, exc, None) from exc
                prep = (str(tmp), None)
            except CheckpointError as exc:
                local_error = exc
                prep = (None, str(exc))
        tmp_name, error = _broadcast(prep)
        if error is not None:
            if local_error is not None:
                raise local_error
            raise CheckpointSaveError(error)
        tmp = Path(tmp_name)
        pg = self._async_group() if background else None
        future, peak = measure_peak(lambda: write_shards(
            tmp / DCP_DIR, flat, rank=rank, fsync=self.fsync, algo=self.checksum,
            process_group=pg, background=self._executor() if background else None))
        self._pending = _Pending(step, self.path_for(step), future, tmp=tmp, files=files,
                                 metrics=metrics, peak=peak, sharded=True)
        if not background:
            return self.finish_pending()
        return self.path_for(step)

    def finish_pending(self) -> Path | None:
        """Complete the save in flight (blocking) and return its committed path.

        A full-state save commits on its writer thread; this waits for it. A sharded save
        is a collective: every rank waits for its own write, the per-rank file records
        are gathered to rank 0, which verifies them against the files on disk and writes
        the marker; every rank then learns whether the commit succeeded.
        """
        p = self._pending
        if p is None:
            return None
        self._pending = None
        if not p.sharded:
            return p.future.result()
        from stoker.train.checkpoint.sharded import DCP_DIR

        rank, world = _rank_world()
        try:
            recs, err = p.future.result(), None
        except Exception as exc:  # every rank must reach the gather, so carry it there
            recs, err = {}, f"{type(exc).__name__}: {exc}"
        reports = _gather_to_zero({"rank": rank, "files": recs, "error": err, "peak": p.peak})
        status: str | None = None
        local_error: BaseException | None = None
        if rank == 0:
            try:
                failed = [r for r in reports if r["error"]]
                if failed:
                    raise CheckpointSaveError(
                        f"could not save checkpoint {step_dir_name(p.step)} in {self.root}: "
                        + "; ".join(f"rank {r['rank']}: {r['error']}" for r in failed)
                        + f". Nothing was committed; the previous checkpoint {self.latest()} "
                        "is intact.")
                files = dict(p.files)
                for r in reports:
                    files.update(r["files"])
                on_disk = {f"{DCP_DIR}/{e.name}" for e in os.scandir(p.tmp / DCP_DIR)}
                listed = {f for f in files if f.startswith(f"{DCP_DIR}/")}
                if on_disk != listed:
                    raise CheckpointSaveError(
                        f"could not save checkpoint {step_dir_name(p.step)} in {self.root}: "
                        f"the sharded files on disk {sorted(on_disk ^ listed)[:5]} do not match "
                        "what the ranks reported writing. Nothing was committed.")
                extra = {"sharded": {
                    "format": "torch.distributed.checkpoint", "dir": DCP_DIR,
                    "world_size": world,
                    "ranks": [{"rank": r["rank"], "files": sorted(r["files"]),
                               "save_peak_bytes": r["peak"]} for r in reports],
                }}
                self._commit(p.step, p.tmp, files, p.metrics, extra)
                status = "ok"
            except CheckpointError as exc:
                shutil.rmtree(p.tmp, ignore_errors=True)
                local_error, status = exc, str(exc)
        status = _broadcast(status)
        if status != "ok":
            if local_error is not None:
                raise local_error
            raise CheckpointSaveError(status)
        return p.final

    def pending(self) -> Path | None:
        """The step directory of the save in flight (not committed yet), or None."""
        return self._pending.final if self._pending is not None else None

    def poll(self) -> Path | None:
        """Commit the save in flight if its writes are done; its path, else None.

        Never blocks on the write itself. For a sharded save it is a collective (all ranks
        agree the writes are done before anyone commits), so every rank calls it at the
        same step; a full-state save needs no agreement. Raises the background write's error.
        """
        p = self._pending
        if p is None:
            return None
        done = p.future.done()
        if p.sharded:
            done = not any(_all_gather(not done))
        return self.finish_pending() if done else None

    def wait(self) -> Path | None:
        """Block until the save in flight is committed (see :meth:`finish_pending`)."""
        return self.finish_pending()

    def _executor(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="stoker-ckpt-writer")
        return self._pool

    def _async_group(self) -> Any:
        """A gloo process group of its own for DCP's writer thread (created once, on every
        rank together): collectives from two threads must not share the training group."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        if self._pg is None:
            self._pg = dist.new_group(backend="gloo")
        return self._pg

    def _check_step(self, step: int) -> None:
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative int, got {step!r}")

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


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: Any) -> list[Any]:
    """``obj`` of every rank (just ``[obj]`` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _gather_to_zero(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on rank 0 (in rank order); other ranks get an empty list."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    rank = dist.get_rank()
    out: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out or []


def _broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
