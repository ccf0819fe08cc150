"""Sharded model and optimizer state in a step directory: ``torch.distributed.checkpoint``.

Under FSDP2 every rank holds a shard of each parameter and of its optimizer state. A
sharded checkpoint writes those shards where they are, in parallel, with no full gather:
``step-NNNNNNNN/dcp/`` holds DCP's files (``__<rank>_<n>.distcp`` per rank and one
``.metadata``), and the rest of the state (schedule, RNG, data position, config, ...) stays
in ``state.json`` and its safetensors files as in a full-state checkpoint, with every
sharded tensor replaced by a :class:`~.codec.DcpRef` naming its DCP key. The commit marker
lists the DCP files too (size and checksum, gathered from the rank that wrote each), so
loading verifies them like any other file, and DCP reshards on load: a checkpoint saved by
2 processes loads into 1, 3 or N (DCP reads each rank's slices from whichever files hold
them), or is consolidated into full tensors in one process without a process group
(``stoker eval``, ``generate``, ``pack``, ``export hf``).

Nothing is unpickled unverified. DCP writes its ``.metadata`` with :mod:`pickle`; stoker
reads it only (1) after its size and checksum match what this run recorded in the commit
marker, and (2) with an unpickler that resolves no global outside DCP's own metadata
classes, ``torch.Size``, torch dtypes/layouts and ``pathlib`` paths (anything else raises),
so even a forged marker cannot make loading run code. The tensor files are read by DCP
with ``torch.load(weights_only=True)``; only tensors are put into DCP (optimizer hyper-
parameters and step counts that are not tensors stay in ``state.json``), so DCP's
``load_bytes`` path, which would unpickle freely, is never used.
"""
from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stoker.errors import CheckpointError
from stoker.train.checkpoint.checksums import file_record
from stoker.train.checkpoint.codec import DcpRef
from stoker.train.checkpoint.tensors import DamagedFile, read_verified

__all__ = [
    "DCP_DIR",
    "DCP_KEYS",
    "DCP_METADATA",
    "fill_refs",
    "load_dcp",
    "local_tensor",
    "measure_peak",
    "own_files",
    "read_dcp_metadata",
    "ref_names",
    "split_for_dcp",
    "write_shards",
]

DCP_DIR = "dcp"
DCP_METADATA = ".metadata"
DCP_KEYS = ("model", "optimizer")  # the top-level state keys whose tensors are sharded


# -- the state tree <-> (skeleton, flat tensors) -------------------------------------------

def split_for_dcp(state: Mapping[str, Any], keys: Iterable[str] = DCP_KEYS
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``state`` with every tensor under ``keys`` replaced by a :class:`DcpRef`, and the
    tensors by their DCP key (``model/<fqn>``, ``optimizer/state/<fqn>/exp_avg``, ...)."""
    import torch

    flat: dict[str, Any] = {}

    def walk(obj: Any, parts: list[str]) -> Any:
        if isinstance(obj, torch.Tensor):
            name = "/".join(parts)
            if name in flat:  # pragma: no cover - keys are unique paths of a tree
                raise CheckpointError(f"two sharded tensors share the DCP key {name!r}")
            flat[name] = obj
            return DcpRef(name)
        if isinstance(obj, Mapping):
            return {k: walk(v, [*parts, str(k)]) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            out = [walk(v, [*parts, str(i)]) for i, v in enumerate(obj)]
            return tuple(out) if isinstance(obj, tuple) else out
        return obj

    wanted = set(keys)
    skeleton = {k: (walk(v, [str(k)]) if k in wanted else v) for k, v in state.items()}
    return skeleton, flat


def fill_refs(tree: Any, tensors: Mapping[str, Any]) -> Any:
    """``tree`` with each :class:`DcpRef` replaced by ``tensors[ref.name]``."""
    if isinstance(tree, DcpRef):
        return tensors[tree.name]
    if isinstance(tree, dict):
        return {k: fill_refs(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [fill_refs(v, tensors) for v in tree]
    if isinstance(tree, tuple):
        return tuple(fill_refs(v, tensors) for v in tree)
    return tree


def ref_names(tree: Any) -> list[str]:
    """The DCP keys a (decoded) state tree refers to."""
    if isinstance(tree, DcpRef):
        return [tree.name]
    if isinstance(tree, dict):
        return [n for v in tree.values() for n in ref_names(v)]
    if isinstance(tree, (list, tuple)):
        return [n for v in tree for n in ref_names(v)]
    return []


def local_tensor(t: Any) -> Any:
    """This rank's part of a tensor (a DTensor's local shard; a plain tensor itself)."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


# -- DCP's metadata, read safely -------------------------------------------------------------

_META = "torch.distributed.checkpoint.metadata"
_ALLOWED = {
    *((_META, n) for n in ("Metadata", "MetadataIndex", "ChunkStorageMetadata",
                           "TensorProperties", "TensorStorageMetadata",
                           "BytesStorageMetadata", "StorageMeta", "_MEM_FORMAT_ENCODING")),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"),
    ("pathlib._local", "PosixPath"), ("pathlib._local", "PurePosixPath"),
}


class _MetadataUnpickler(pickle.Unpickler):
    """Resolves only DCP's metadata classes, torch.Size, dtypes, layouts and paths."""

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in DCP metadata")


def read_dcp_metadata(step_dir: Path, files: Mapping[str, Any], algo: str) -> Any:
    """DCP's ``Metadata`` of a step, unpickled only after its checksum matched the marker's
    record and with the restricted unpickler above. Raises :class:`DamagedFile`."""
    rel = f"{DCP_DIR}/{DCP_METADATA}"
    if rel not in files:
        raise DamagedFile(f"its marker does not list {rel}")
    buf = read_verified(step_dir, rel, files[rel], algo)
    try:
        return _MetadataUnpickler(_Buffer(buf)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise DamagedFile(f"{step_dir / rel} is not valid DCP metadata ({exc})") from None


class _Buffer:
    """A file-like view of a mapped buffer for the unpickler."""

    def __init__(self, buf: Any):
        import io

        self._f = io.BytesIO(bytes(buf))
        self.read = self._f.read
        self.readline = self._f.readline
        self.readinto = self._f.readinto


def _reader(step_dir: Path, files: Mapping[str, Any], algo: str) -> Any:
    """A DCP FileSystemReader that verifies every file before DCP reads it."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class VerifiedReader(FileSystemReader):
        def __init__(self) -> None:
            super().__init__(str(step_dir / DCP_DIR))
            self._verified: set[str] = set()

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            md = read_dcp_metadata(step_dir, files, algo)
            if getattr(md, "storage_meta", None) is None:
                md.storage_meta = StorageMeta()
            md.storage_meta.load_id = self.load_id
            return md

        def read_data(self, plan: Any, planner: Any) -> Any:
            for item in plan.items:
                rel_path = self.storage_data[item.storage_index].relative_path
                rel = f"{DCP_DIR}/{rel_path}"
                if rel in self._verified:
                    continue
                if rel not in files:
                    raise DamagedFile(f"DCP file {rel} is not listed in the marker")
                read_verified(step_dir, rel, files[rel], algo)  # size + checksum, then DCP reads
                self._verified.add(rel)
            return super().read_data(plan, planner)

    return VerifiedReader()


def load_dcp(step_dir: Path, files: Mapping[str, Any], algo: str, names: Iterable[str], *,
             into: Mapping[str, Any] | None = None, process_group: Any = None,
             ) -> dict[str, Any]:
    """The tensors ``names`` of a step's ``dcp/`` files.

    With ``into`` (name -> tensor or DTensor of the current model, any world size), DCP
    fills those in place, each rank reading just its slices (a collective over the process
    group). Without it, full tensors are allocated from the metadata and filled in this
    process alone (consolidation; no process group needed). Raises :class:`DamagedFile`
    for a missing, damaged or mismatched file or tensor.
    """
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    names = list(names)
    md = read_dcp_metadata(step_dir, files, algo)
    meta = md.state_dict_metadata
    missing = [n for n in names if n not in meta]
    if missing:
        raise DamagedFile(f"tensors {missing[:5]} are missing from its DCP metadata")
    if into is None:
        targets = {}
        for n in names:
            m = meta[n]
            if not isinstance(m, TensorStorageMetadata):
                raise DamagedFile(f"DCP entry {n!r} is not a tensor")
            targets[n] = torch.empty(tuple(m.size), dtype=m.properties.dtype)
        no_dist = True
    else:
        targets = {n: into[n] for n in names}
        for n, t in targets.items():
            m = meta[n]
            if not isinstance(m, TensorStorageMetadata) or tuple(m.size) != tuple(t.shape):
                shape = tuple(m.size) if isinstance(m, TensorStorageMetadata) else "not a tensor"
                raise DamagedFile(f"DCP tensor {n!r} has shape {shape}, the model {tuple(t.shape)}")
        no_dist = not (dist.is_available() and dist.is_initialized())
    if not targets:
        return {}
    try:
        with _quiet_no_dist():
            dcp.load(targets, storage_reader=_reader(step_dir, files, algo),
                     process_group=process_group, no_dist=no_dist)
    except CheckpointException as exc:  # DCP wraps what each rank raised
        for err in getattr(exc, "failures", {}).values():
            if isinstance(err, DamagedFile):
                raise err from None
        raise DamagedFile(f"its DCP files could not be read: {exc}") from None
    return targets


@contextlib.contextmanager
def _quiet_no_dist() -> Iterator[None]:
    """DCP warns that a process without a group "assumes a single process": that is the
    intent here (consolidating, or a world of one), so the warning is dropped."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        yield


# -- writing -------------------------------------------------------------------------------

def own_files(dcp_dir: Path, rank: int) -> list[Path]:
    """The files of ``dcp_dir`` this rank wrote (rank 0 also writes ``.metadata``)."""
    mine = sorted(p for p in dcp_dir.glob(f"__{rank}_*.distcp"))
    if rank == 0 and (dcp_dir / DCP_METADATA).exists():
        mine.append(dcp_dir / DCP_METADATA)
    return mine


def _records(dcp_dir: Path, rank: int, algo: str) -> dict[str, Any]:
    return {f"{DCP_DIR}/{p.name}": file_record(p, algo) for p in own_files(dcp_dir, rank)}


def write_shards(dcp_dir: Path, flat: Mapping[str, Any], *, rank: int, fsync: bool, algo: str,
                 process_group: Any = None, background: ThreadPoolExecutor | None = None,
                 ) -> Future[dict[str, Any]]:
    """Write this rank's shards of ``flat`` into ``dcp_dir`` with DCP; a future of the
    ``{relative file: {size, checksum}}`` records of the files this rank wrote.

    Synchronous (``background=None``): the future is already done when this returns.
    With a ``background`` executor: DCP's ``async_save`` first stages a CPU copy of this
    rank's shards (the one staging buffer; training may then change the parameters), its
    writer thread writes them (collectives on ``process_group``, which must not be the
    group the training step uses), and ``background`` then checksums the files.
    """
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    no_dist = not (dist.is_available() and dist.is_initialized())
    writer = dcp.FileSystemWriter(str(dcp_dir), single_file_per_rank=True, sync_files=fsync,
                                  thread_count=1, overwrite=False)
    if background is None:
        done: Future[dict[str, Any]] = Future()
        try:
            with _quiet_no_dist():
                dcp.save(dict(flat), storage_writer=writer, process_group=process_group,
                         no_dist=no_dist)
            done.set_result(_records(dcp_dir, rank, algo))
        except BaseException as exc:  # handed to the caller through the future
            done.set_exception(exc)
        return done
    with _quiet_no_dist():
        upload = dcp.async_save(dict(flat), storage_writer=writer,
                                process_group=process_group, no_dist=no_dist)

    def finish() -> dict[str, Any]:
        upload.result()
        return _records(dcp_dir, rank, algo)

    return background.submit(finish)


def measure_peak(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """``fn()`` and the growth of this process's peak resident memory while it ran (bytes;
    None where Linux's ``/proc/self/clear_refs`` peak reset is unavailable)."""
    try:
        rss = _status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    except OSError:
        return fn(), None
    out = fn()
    try:
        return out, max(0, _status_kb("VmHWM") - rss) * 1024
    except OSError:  # pragma: no cover
        return out, None


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")
