"""Crash-safe training checkpoints that load without unpickling anything.

A checkpoint is one step directory, ``<root>/step-NNNNNNNN/``:

- ``state.json``: the whole state tree (numbers, strings, lists, dicts with any key type,
  tuples) with every tensor replaced by a reference ``{"__tensor__": "FILE:NAME"}``;
- ``<key>.safetensors``: the tensors of each top-level key of the state (``model``,
  ``optimizer``, ``rng``, ...), in the standard safetensors format (so ``model.safetensors``
  opens in any safetensors tool);
- ``COMMITTED``: the commit marker, written last, listing every file with its size and
  checksum, plus the step and the metrics the checkpoint was saved with.

Why this shape: a kill -9, a power cut or a full disk must never leave something that
*looks* loadable. Files are written into a temporary directory in the same parent, fsynced,
the directory is renamed to its final name, and only then is the marker written (temp file,
fsync, rename, fsync of the directory). "Latest" is the highest step with a valid marker, so
a half-written checkpoint is invisible. Loading re-checks sizes and checksums, so a truncated
or bit-flipped file is reported (with the previous good checkpoint) instead of silently
training from garbage. Tensors are read back with a small safetensors reader and the tree with
``json``: no pickle is involved, so loading an untrusted checkpoint cannot run code.

The default checksum is CRC-32 (``zlib``, ~3 GB/s): it detects truncation and flipped bits,
which is the threat here; pass ``checksum="sha256"`` for a cryptographic digest at about a
third of the speed.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import struct
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stoker.errors import CheckpointError, CheckpointSaveError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "MARKER",
    "STATE_FILE",
    "CheckpointManager",
    "check_model_compatible",
    "find_latest",
    "is_committed",
    "load_checkpoint",
    "read_marker",
    "resolve_checkpoint",
    "step_dir_name",
    "verify_checkpoint",
]

MARKER = "COMMITTED"
STATE_FILE = "state.json"
FORMAT = "stoker-checkpoint/1"
_STEP_RE = re.compile(r"^step-(\d{8,})$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_TAGS = frozenset({"__tensor__", "__tuple__", "__dict__", "__float__", "__ndarray__", "__bytes__"})
_CHUNK = 16 << 20  # write/hash granularity for big tensors
_BACKGROUND_HASH_BYTES = 8 << 20  # files this big are hashed on a helper thread


def step_dir_name(step: int) -> str:
    """``step-00000100``: zero-padded so that names sort in step order."""
    return f"step-{step:08d}"


# ----------------------------------------------------------------------------- checksums


class _Hasher:
    """Incremental checksum over the bytes written to or read from one file.

    With ``background=True`` the updates run, in order, on one helper thread: zlib and
    hashlib release the GIL on large buffers, so checksumming overlaps with the write
    system calls instead of adding to them.
    """

    def __init__(self, algo: str, *, background: bool = False):
        self.algo = algo
        self._crc = 0
        self._h: Any = None
        if algo == "sha256":
            import hashlib

            self._h = hashlib.sha256()
        elif algo not in ("crc32", "none"):  # pragma: no cover - validated in the manager
            raise ValueError(f"unknown checksum {algo!r}")
        self._pool: Any = None
        self._pending: list[Any] = []
        if background and algo != "none":
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="stoker-ckpt-hash")

    def _update(self, data: Any) -> None:
        if self.algo == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        elif self._h is not None:
            self._h.update(data)

    def update(self, data: Any) -> None:
        if self.algo == "none":
            return
        if self._pool is not None:
            self._pending.append(self._pool.submit(self._update, data))
        else:
            self._update(data)

    def close(self) -> None:
        """Wait for queued updates (re-raising their errors) and stop the helper thread."""
        if self._pool is not None:
            try:
                for fut in self._pending:
                    fut.result()
            finally:
                self._pending.clear()
                self._pool.shutdown(wait=True)
                self._pool = None

    def hexdigest(self) -> str:
        self.close()
        if self.algo == "crc32":
            return f"{self._crc:08x}"
        if self._h is not None:
            return self._h.hexdigest()
        return ""


# ----------------------------------------------------------------------------- file I/O


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(f: Any, data: Any, hasher: _Hasher) -> None:
    mv = memoryview(data).cast("B")
    for i in range(0, len(mv), _CHUNK):
        chunk = mv[i : i + _CHUNK]
        hasher.update(chunk)
        f.write(chunk)


def _write_bytes(path: Path, data: bytes, *, fsync: bool, algo: str) -> dict[str, Any]:
    hasher = _Hasher(algo)
    with open(path, "wb") as f:
        _write_all(f, data, hasher)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    return {"size": len(data), algo: hasher.hexdigest()} if algo != "none" else {"size": len(data)}


# safetensors dtype names (https://github.com/huggingface/safetensors format spec)
def _dtype_tables() -> tuple[dict[Any, str], dict[str, Any]]:
    import torch

    names = {
        torch.float64: "F64",
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
    }
    for attr, name in (
        ("uint16", "U16"),
        ("uint32", "U32"),
        ("uint64", "U64"),
        ("float8_e4m3fn", "F8_E4M3"),
        ("float8_e5m2", "F8_E5M2"),
    ):
        if hasattr(torch, attr):
            names[getattr(torch, attr)] = name
    return names, {v: k for k, v in names.items()}


def _write_safetensors(
    path: Path, tensors: dict[str, torch.Tensor], *, fsync: bool, algo: str
) -> dict[str, Any]:
    """Write ``tensors`` as a safetensors file, hashing the bytes as they go out.

    Written by hand (the format is an 8-byte header length, a JSON header and the raw
    bytes) so that each tensor's memory is written once, straight from the tensor, with the
    checksum computed on the same pass, and tensors that share storage (tied weights) need
    no copies. Tensors are ordered by element size so every tensor stays aligned.
    """
    import torch

    to_name, _ = _dtype_tables()
    items = []
    for name, t in tensors.items():
        t = t.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        if t.dtype not in to_name:
            raise CheckpointError(
                f"cannot save tensor {name!r} of dtype {t.dtype}: safetensors has no such dtype"
            )
        items.append((name, t.contiguous()))
    items.sort(key=lambda kv: (-kv[1].element_size(), kv[0]))
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, t in items:
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": to_name[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    hasher = _Hasher(algo, background=offset >= _BACKGROUND_HASH_BYTES)
    try:
        with open(path, "wb") as f:
            _write_all(f, struct.pack("<Q", len(hb)), hasher)
            _write_all(f, hb, hasher)
            for _, t in items:
                if t.numel():
                    _write_all(f, t.reshape(-1).view(torch.uint8).numpy(), hasher)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    finally:
        hasher.close()
    size = 8 + len(hb) + offset
    rec: dict[str, Any] = {"size": size}
    if algo != "none":
        rec[algo] = hasher.hexdigest()
    return rec


def _read_verified(ckpt: Path, fname: str, rec: Mapping[str, Any], algo: str) -> Any:
    """Map one file of a checkpoint into memory and check its size and checksum.

    The file is memory-mapped copy-on-write rather than read into a new buffer: the pages
    come straight from the page cache (no copy, no fresh allocation), tensors made from
    them are writable, and writes never reach the file. Committed checkpoint files are
    never modified in place (pruning unlinks them, which keeps existing mappings valid).
    """
    import mmap

    path = ckpt / fname
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _corrupt(ckpt, f"{path} is missing") from None
    if size != rec.get("size"):
        raise _corrupt(
            ckpt,
            f"{path} has {size} bytes but {rec.get('size')} were written "
            f"({'truncated' if size < (rec.get('size') or 0) else 'grown'} after saving)",
        )
    if size == 0:
        buf: Any = bytearray()
    else:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    if algo != "none" and algo in rec:
        hasher = _Hasher(algo)
        hasher.update(buf)
        if hasher.hexdigest() != rec[algo]:
            raise _corrupt(
                ckpt,
                f"{path} fails its {algo} check (expected {rec[algo]}, got "
                f"{hasher.hexdigest()}): the file was damaged or modified after saving",
            )
    return buf


def _parse_safetensors(ckpt: Path, fname: str, buf: Any) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file held in ``buf``, without copying the data."""
    import torch

    _, from_name = _dtype_tables()
    path = ckpt / fname
    if len(buf) < 8:
        raise _corrupt(ckpt, f"{path} is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if 8 + n > len(buf):
        raise _corrupt(ckpt, f"{path} has a header longer than the file")
    try:
        header = json.loads(bytes(buf[8 : 8 + n]))
    except ValueError:
        raise _corrupt(ckpt, f"{path} has an unreadable header") from None
    base = 8 + n
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = from_name[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise _corrupt(ckpt, f"{path}: bad header entry for tensor {name!r}") from None
        numel = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - start != numel * itemsize or start < 0 or base + end > len(buf):
            raise _corrupt(ckpt, f"{path}: tensor {name!r} does not fit its recorded size")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(buf, dtype=dtype, count=numel, offset=base + start).view(
                shape
            )
    return out


# ----------------------------------------------------------------------------- tree <-> JSON


class _TensorSink:
    """Collects the tensors of one top-level key while its subtree is encoded."""

    def __init__(self, fname: str):
        self.fname = fname
        self.tensors: dict[str, Any] = {}
        self._seen: dict[tuple, str] = {}

    def add(self, parts: list[str], t: torch.Tensor) -> str:
        key = (
            t.device,
            t.dtype,
            t.untyped_storage().data_ptr(),
            t.storage_offset(),
            tuple(t.shape),
            tuple(t.stride()),
        )
        if key in self._seen and t.numel():  # tied weights: stored once, restored twice
            return self._seen[key]
        name = "/".join(parts) or "tensor"
        base, i = name, 1
        while name in self.tensors:
            i += 1
            name = f"{base}#{i}"
        self.tensors[name] = t
        ref = f"{self.fname}:{name}"
        self._seen[key] = ref
        return ref


def _encode(obj: Any, parts: list[str], sink: _TensorSink, where: str) -> Any:
    import torch

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return {"__float__": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": sink.add(parts, obj)}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not (_TAGS & set(obj)):
            return {k: _encode(v, [*parts, k], sink, f"{where}.{k}") for k, v in obj.items()}
        return {
            "__dict__": [
                [_encode(k, [*parts, "key"], sink, where), _encode(v, [*parts, str(k)], sink, f"{where}.{k}")]
                for k, v in obj.items()
            ]
        }
    if isinstance(obj, list):
        return [_encode(v, [*parts, str(i)], sink, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, [*parts, str(i)], sink, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, bytes):
        return {"__bytes__": base64.b64encode(obj).decode()}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes, bytearray)):
        # e.g. an OmegaConf ListConfig; DictConfig is already a Mapping
        return [_encode(v, [*parts, str(i)], sink, f"{where}[{i}]") for i, v in enumerate(obj)]
    mod = type(obj).__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            if arr.dtype.hasobject:
                raise CheckpointError(f"cannot save {where}: numpy object arrays are not supported")
            return {
                "__ndarray__": {
                    "dtype": arr.dtype.str,
                    "shape": list(arr.shape),
                    "data": base64.b64encode(arr.tobytes()).decode(),
                }
            }
        if isinstance(obj, np.generic):
            return _encode(obj.item(), parts, sink, where)
    raise CheckpointError(
        f"cannot save {where}: values of type {type(obj).__module__}.{type(obj).__qualname__} "
        "are not supported in checkpoint state (use tensors, numbers, strings, bools, None, "
        "lists, tuples and dicts; give objects a state_dict())"
    )


def _decode(obj: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, val), = obj.items()
        if tag == "__tensor__":
            return tensors[val]
        if tag == "__tuple__":
            return tuple(_decode(v, tensors) for v in val)
        if tag == "__dict__":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in val}
        if tag == "__float__":
            return float(val)
        if tag == "__bytes__":
            return base64.b64decode(val)
        if tag == "__ndarray__":
            import numpy as np

            return np.frombuffer(base64.b64decode(val["data"]), dtype=np.dtype(val["dtype"])).reshape(
                val["shape"]
            ).copy()
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _tensor_refs(obj: Any) -> Iterator[str]:
    if isinstance(obj, list):
        for v in obj:
            yield from _tensor_refs(v)
    elif isinstance(obj, dict):
        if len(obj) == 1 and "__tensor__" in obj:
            yield obj["__tensor__"]
        else:
            for v in obj.values():
                yield from _tensor_refs(v)


def _file_for_key(key: Any, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", key) if isinstance(key, str) and key else "misc"
    stem = stem.lstrip(".") or "misc"
    name = f"{stem}.safetensors"
    i = 1
    while name in used:
        i += 1
        name = f"{stem}-{i}.safetensors"
    used.add(name)
    return name


# ----------------------------------------------------------------------------- markers


def read_marker(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed commit marker of a step directory, or None when absent or unreadable."""
    p = Path(path) / MARKER
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    m = _STEP_RE.match(Path(path).name)
    if m and data.get("step") != int(m.group(1)):
        return None
    if not isinstance(data.get("files"), dict):
        return None
    return data


def is_committed(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a step directory with a valid commit marker."""
    return read_marker(path) is not None


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    out = []
    for e in entries:
        m = _STEP_RE.match(e.name)
        if m and e.is_dir():
            out.append((int(m.group(1)), Path(e.path)))
    out.sort()
    return out


def _committed(root: Path) -> list[tuple[int, Path, dict[str, Any]]]:
    out = []
    for step, p in _step_dirs(root):
        marker = read_marker(p)
        if marker is not None:
            out.append((step, p, marker))
    return out


def find_latest(root: str | os.PathLike[str]) -> Path | None:
    """Highest-step committed checkpoint under ``root`` (a ``checkpoints/`` directory)."""
    c = _committed(Path(root))
    return c[-1][1] if c else None


def verify_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check the marker, and every file's size and checksum; raise CheckpointError if not."""
    path = Path(path)
    marker = _require_marker(path)
    algo = marker.get("checksum", "none")
    for fname, rec in marker["files"].items():
        _read_verified(path, fname, rec, algo)


def _previous_good(path: Path) -> Path | None:
    """The newest checkpoint older than ``path`` beside it that verifies completely."""
    m = _STEP_RE.match(path.name)
    if not m:
        return None
    step = int(m.group(1))
    for s, p, _ in reversed(_committed(path.parent)):
        if s >= step:
            continue
        try:
            verify_checkpoint(p)
        except CheckpointError:
            continue
        return p
    return None


def _corrupt(path: Path, detail: str) -> CheckpointError:
    prev = _previous_good(path)
    if prev is not None:
        offer = f"The previous good checkpoint is {prev}; resume from it with resume={prev}."
    else:
        offer = f"There is no earlier valid checkpoint in {path.parent}."
    return CheckpointError(f"checkpoint {path} is corrupted and was not loaded: {detail}. {offer}")


def _require_marker(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} does not exist (expected a directory like "
            f".../checkpoints/{step_dir_name(100)})"
        )
    marker = read_marker(path)
    if marker is None:
        if (path / MARKER).exists():
            raise _corrupt(path, f"its commit marker {path / MARKER} is unreadable")
        raise _corrupt(
            path,
            f"it has no commit marker ({MARKER}), so it was never completely written "
            "(the run stopped while saving)",
        )
    return marker


# ----------------------------------------------------------------------------- loading


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A step directory from a path that is one, a ``checkpoints/`` dir, or a run dir."""
    p = Path(path)
    if _STEP_RE.match(p.name) or (p / MARKER).exists():
        return p
    for root in (p, p / "checkpoints"):
        latest = find_latest(root)
        if latest is not None:
            return latest
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    raise CheckpointError(
        f"no committed checkpoint found in {p} (looked for step-NNNNNNNN/ directories with a "
        f"{MARKER} marker in {p} and {p / 'checkpoints'})"
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: Any = "cpu",
    keys: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Load a step directory back into the state dict that was saved.

    ``keys`` limits loading to some top-level entries (``("model", "config")`` for
    evaluation reads neither the optimizer file nor its checksum). Sizes and checksums of
    every file read are verified first; any mismatch raises :class:`CheckpointError` naming
    the file and offering the previous good checkpoint.
    """
    path = Path(path)
    marker = _require_marker(path)
    algo = marker.get("checksum", "none")
    files: dict[str, Any] = marker["files"]
    if STATE_FILE not in files:
        raise _corrupt(path, f"its marker does not list {STATE_FILE}")
    try:
        tree = json.loads(bytes(_read_verified(path, STATE_FILE, files[STATE_FILE], algo)))
    except ValueError:
        raise _corrupt(path, f"{path / STATE_FILE} is not valid JSON") from None
    if not isinstance(tree, dict):
        raise _corrupt(path, f"{path / STATE_FILE} does not hold a state dict")
    if keys is not None:
        wanted = set(keys)
        enc_keys = tree.get("__dict__") if set(tree) == {"__dict__"} else None
        if enc_keys is not None:
            tree = {"__dict__": [kv for kv in enc_keys if kv[0] in wanted]}
        else:
            tree = {k: v for k, v in tree.items() if k in wanted}
    refs = set(_tensor_refs(tree))
    tensors: dict[str, Any] = {}
    for fname in sorted({r.split(":", 1)[0] for r in refs}):
        if fname not in files:
            raise _corrupt(path, f"{STATE_FILE} refers to {fname}, which its marker does not list")
        buf = _read_verified(path, fname, files[fname], algo)
        for name, t in _parse_safetensors(path, fname, buf).items():
            tensors[f"{fname}:{name}"] = t
    missing = refs - tensors.keys()
    if missing:
        raise _corrupt(path, f"tensors {sorted(missing)[:5]} are missing from their files")
    if map_location is not None and str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return _decode(tree, tensors)


# ----------------------------------------------------------------------------- manager


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
        if checksum not in ("crc32", "sha256", "none"):
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
        return [p for _, p, _ in _committed(self.root)]

    def infos(self) -> list[CheckpointInfo]:
        """Committed checkpoints with their steps and metrics, oldest first."""
        return [
            CheckpointInfo(s, p, _metrics_from_json(m.get("metrics")))
            for s, p, m in _committed(self.root)
        ]

    def latest(self) -> Path | None:
        """Highest step with a valid commit marker; half-written checkpoints are invisible."""
        return find_latest(self.root)

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
    ) -> dict[str, Any]:
        """See :func:`load_checkpoint`."""
        return load_checkpoint(path, map_location=map_location, keys=keys)

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
        partial directory visible) when the state holds an unsupported value or the disk
        fills up or fails.
        """
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative int, got {step!r}")
        metrics = {k: _metric_float(k, v) for k, v in (metrics or {}).items()}
        final = self.path_for(step)

        # Encode first: an unsupported value fails before anything touches the disk.
        sinks: dict[Any, _TensorSink] = {}
        used: set[str] = set()
        tree: dict[Any, Any] = {}
        for key, value in state.items():
            sink = _TensorSink(_file_for_key(key, used))
            tree[key] = _encode(value, [], sink, f"state[{key!r}]")
            if sink.tensors:
                sinks[key] = sink
            else:
                used.discard(sink.fname)
        if all(isinstance(k, str) for k in tree) and not (_TAGS & set(tree)):
            top: Any = tree
        else:
            top = {"__dict__": [[_encode(k, [], _TensorSink(""), "key"), v] for k, v in tree.items()]}
        state_bytes = json.dumps(top, separators=(",", ":"), allow_nan=False).encode()

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._save_error(step, exc, None) from exc
        self._sweep_leftovers()
        tmp = self.root / f"{_TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        current: str | None = None
        try:
            tmp.mkdir()
            files: dict[str, Any] = {}
            for sink in sinks.values():
                current = sink.fname
                files[sink.fname] = _write_safetensors(
                    tmp / sink.fname, sink.tensors, fsync=self.fsync, algo=self.checksum
                )
            current = STATE_FILE
            files[STATE_FILE] = _write_bytes(
                tmp / STATE_FILE, state_bytes, fsync=self.fsync, algo=self.checksum
            )
            current = None
            if self.fsync:
                _fsync_dir(tmp)
            if final.exists():  # re-saving a step (e.g. the end-of-run save): retire the old one
                self._discard(final)
            os.rename(tmp, final)
            if self.fsync:
                _fsync_dir(self.root)
            current = MARKER
            marker = {
                "format": FORMAT,
                "step": step,
                "checksum": self.checksum,
                "files": files,
                "metrics": {k: _metric_json(v) for k, v in metrics.items()},
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

    def _write_marker(self, final: Path, marker: dict[str, Any]) -> None:
        data = json.dumps(marker, indent=1, allow_nan=False).encode()
        tmp = final / f"{_TMP_PREFIX}{MARKER}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, final / MARKER)
        if self.fsync:
            _fsync_dir(final)

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
        trash = self.root / f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _sweep_leftovers(self) -> None:
        """Remove temp/trash dirs and uncommitted step dirs left by a crashed save."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for e in entries:
            if e.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) and e.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)
            elif _STEP_RE.match(e.name) and e.is_dir() and not (Path(e.path) / MARKER).exists():
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


# ----------------------------------------------------------------------------- model shapes


def check_model_compatible(model: Any, state: Mapping[str, Any]) -> list[str]:
    """Problems loading ``state`` (a model state dict) into ``model``; empty when it fits.

    Each entry names one tensor: a shape mismatch, a tensor the checkpoint lacks, or one the
    model does not have. The trainer raises CheckpointError listing them, so a user who
    changed ``model.dim`` sees exactly which weights disagree.
    """
    own = model.state_dict() if hasattr(model, "state_dict") else dict(model)
    problems: list[str] = []
    for name, t in own.items():
        if name not in state:
            problems.append(f"{name}: missing from the checkpoint (model has shape {_shape(t)})")
            continue
        other = state[name]
        if hasattr(other, "shape") and tuple(other.shape) != tuple(t.shape):
            problems.append(
                f"{name}: checkpoint has shape {_shape(other)}, model has shape {_shape(t)}"
            )
    for name, t in state.items():
        if name not in own:
            problems.append(f"{name}: in the checkpoint (shape {_shape(t)}) but not in the model")
    for prefix in ("module.", "_orig_mod."):
        ckpt_has = any(k.startswith(prefix) for k in state)
        model_has = any(k.startswith(prefix) for k in own)
        if problems and ckpt_has != model_has:
            where = "checkpoint" if ckpt_has else "model"
            problems.append(
                f"hint: the {where}'s tensor names start with {prefix!r} (a DDP or torch.compile "
                "wrapper); save and load the unwrapped module's state dict"
            )
    return problems


def _shape(t: Any) -> str:
    shape = getattr(t, "shape", None)
    return "(" + ", ".join(str(int(s)) for s in shape) + ")" if shape is not None else "?"
