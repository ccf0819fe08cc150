"""Checkpoint files on disk: safetensors files of tensors and the JSON state file.

Every byte is checksummed on the pass that writes or reads it (:mod:`.checksums`), and
reading maps the file instead of copying it. Problems found while reading raise
:class:`DamagedFile` with a one-line detail; :mod:`.load` turns that into a
:class:`~stoker.errors.CheckpointError` that also names the previous good checkpoint.

The safetensors writer is hand-written although the ``safetensors`` library is a
dependency, for speed measured on the state of ``benchmarks/bench_train_checkpoint.py`` (a
~10M-parameter model with its AdamW state, 146 MB in 3 files, crc32, fsync off, page cache,
2-core CPU container, median of 7): this writer 145-156 ms; ``safetensors.torch.save_file``
plus a second pass over the file for the checksum 233-242 ms (1.6x); ``safetensors.torch.save``
to bytes, checksum, write 338-350 ms (2.3x). The library cannot checksum on the pass that
writes, and ``save`` copies every tensor into a new buffer first. Writing straight from each
tensor's memory also needs no clone of tied weights (the library refuses tensors that share
memory). The format is small (an 8-byte header length, a JSON header, the raw bytes; see
https://github.com/huggingface/safetensors), and ``tests/train/test_checkpoint.py`` checks
both ways that files written here load with the library and files it writes load here.
"""
from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoker.errors import CheckpointError, UserError
from stoker.train.checkpoint.checksums import Hasher

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DamagedFile", "nonfinite", "read_verified", "parse_safetensors",
           "safetensors_parts", "write_bytes", "write_safetensors"]

_CHUNK = 16 << 20  # write/hash granularity for big tensors
_BACKGROUND_HASH_BYTES = 8 << 20  # files this big are hashed on a helper thread
# the JSON header of a safetensors file: kilobytes in practice (about 100 bytes a tensor);
# a larger claim is garbage or a memory bomb (the format's own reader allows 100 MB)
MAX_HEADER_BYTES = 16 << 20


class DamagedFile(Exception):
    """A checkpoint file is missing, truncated, fails its checksum or cannot be parsed."""


def _write_all(f: Any, data: Any, hasher: Hasher) -> None:
    mv = memoryview(data).cast("B")
    for i in range(0, len(mv), _CHUNK):
        chunk = mv[i : i + _CHUNK]
        hasher.update(chunk)
        f.write(chunk)


def write_bytes(path: Path, data: bytes, *, fsync: bool, algo: str) -> dict[str, Any]:
    """Write ``data`` to ``path`` (inside the step's temp directory); its size and checksum."""
    hasher = Hasher(algo)
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


def safetensors_parts(tensors: Mapping[str, torch.Tensor]) -> tuple[list[Any], int]:
    """A safetensors file as buffers to write in order (header, then each tensor's own
    memory, no copies) and its total size. Tensors are ordered by element size so every
    tensor stays aligned; a tensor of a dtype safetensors lacks raises CheckpointError."""
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
    parts: list[Any] = [struct.pack("<Q", len(hb)), hb]
    parts += [t.reshape(-1).view(torch.uint8).numpy() for _, t in items if t.numel()]
    return parts, 8 + len(hb) + offset


def write_safetensors(
    path: Path, tensors: dict[str, torch.Tensor], *, fsync: bool, algo: str
) -> dict[str, Any]:
    """Write ``tensors`` as a safetensors file, hashing the bytes as they go out.

    Each tensor's memory is written once, straight from the tensor, with the checksum
    computed on the same pass, and tensors that share storage (tied weights) need no copies.
    """
    parts, size = safetensors_parts(tensors)
    hasher = Hasher(algo, background=size >= _BACKGROUND_HASH_BYTES)
    try:
        with open(path, "wb") as f:
            for part in parts:
                _write_all(f, part, hasher)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    finally:
        hasher.close()
    rec: dict[str, Any] = {"size": size}
    if algo != "none":
        rec[algo] = hasher.hexdigest()
    return rec


def nonfinite(tensors: Mapping[str, torch.Tensor], limit: int = 5) -> list[str]:
    """Names of the floating-point ``tensors`` that hold NaN or inf (empty: all finite).

    The common case costs one fused pass: the 2-norm of every tensor at once
    (``torch._foreach_norm``, per dtype and device) and one host sync for the verdict. A
    tensor holding NaN or inf always has a NaN or inf norm, so a finite result proves every
    tensor finite. The converse can fail (squares of values above ~1e19 overflow float32),
    so only then are the tensors checked one by one, exactly, which also names them (at
    most ``limit``). Measured on the 146 MB state of ``benchmarks/bench_train_checkpoint.py``
    (2-core CPU): ~50 ms; the max-abs norm (``ord=inf``) that cannot overflow took ~1.4 s,
    ``isfinite().all()`` per tensor ~4.5 s, a float64 2-norm ~1 s.
    """
    import torch

    groups: dict[tuple[Any, Any], list[tuple[str, torch.Tensor]]] = {}
    for name, t in tensors.items():
        if t.is_floating_point() and t.numel():
            groups.setdefault((t.dtype, t.device), []).append((name, t.detach()))
    if not groups:
        return []
    norms = []
    for items in groups.values():
        norms.extend(n.reshape(1).float() for n in torch._foreach_norm([t for _, t in items], 2))
    if bool(torch.cat(norms).isfinite().all()):
        return []
    bad = []
    for items in groups.values():
        for name, t in items:
            if not bool(t.isfinite().all()):
                bad.append(name)
                if len(bad) >= limit:
                    return bad
    return bad


def describe_nonfinite(t: torch.Tensor) -> str:
    """``3 NaN, 1 inf of 4096 values`` for a message (slow path only)."""
    import torch

    nan = int(torch.isnan(t).sum())
    inf = int(torch.isinf(t).sum())
    parts = [f"{nan} NaN"] if nan else []
    if inf:
        parts.append(f"{inf} inf")
    return f"{', '.join(parts)} of {t.numel()} values"


def read_verified(ckpt: Path, fname: str, rec: Mapping[str, Any], algo: str) -> Any:
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
        raise DamagedFile(f"{path} is missing") from None
    if size != rec.get("size"):
        raise DamagedFile(
            f"{path} has {size} bytes but {rec.get('size')} were written "
            f"({'truncated' if size < (rec.get('size') or 0) else 'grown'} after saving)",
        )
    if size == 0:
        buf: Any = bytearray()
    else:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
    if algo != "none" and algo in rec:
        hasher = Hasher(algo)
        hasher.update(buf)
        if hasher.hexdigest() != rec[algo]:
            raise DamagedFile(
                f"{path} fails its {algo} check (expected {rec[algo]}, got "
                f"{hasher.hexdigest()}): the file was damaged or modified after saving",
            )
    return buf


def _header_entry(path: Path, name: str, info: Any, from_name: dict[str, Any]
                  ) -> tuple[Any, list[int], int, int]:
    """(dtype, shape, start, end) of one tensor's header entry, or DamagedFile saying why."""
    def bad(why: str) -> DamagedFile:
        return DamagedFile(f"{path}: header entry of tensor {name!r} {why}")

    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise bad("must be an object with exactly dtype, shape and data_offsets")
    dtype = from_name.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise bad(f"has an unknown dtype {info['dtype']!r} (known: {', '.join(from_name)})")
    shape, offsets = info["shape"], info["data_offsets"]
    if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
        raise bad(f"has shape {shape!r}; a shape is a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_count, offsets)) \
            or offsets[0] > offsets[1]:
        raise bad(f"has data_offsets {offsets!r}; expected [start, end] with 0 <= start <= end")
    return dtype, shape, offsets[0], offsets[1]


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse_safetensors(ckpt: Path, fname: str, buf: Any) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file held in ``buf``, without copying the data.

    The file may come from anyone (an archive, a Hugging Face directory), so the header is
    checked whole before any tensor is made: a JSON object of at most
    :data:`MAX_HEADER_BYTES` (duplicate keys refused), each entry exactly ``dtype`` (known),
    ``shape`` (non-negative integers) and ``data_offsets``; each tensor's byte length is its
    element count times its dtype's size; and the tensors tile the data region exactly (no
    overlap, no gap, nothing after the last), as the format's own reader requires. Two
    tensors over the same bytes would otherwise alias each other's memory.
    """
    import torch

    from stoker.untrusted import size_text, strict_json

    _, from_name = _dtype_tables()
    path = ckpt / fname
    if len(buf) < 8:
        raise DamagedFile(f"{path} is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if n > MAX_HEADER_BYTES:
        raise DamagedFile(f"{path} declares a {size_text(n)} header; a safetensors header is "
                          f"at most {size_text(MAX_HEADER_BYTES)} (not a safetensors file?)")
    if 8 + n > len(buf):
        raise DamagedFile(f"{path} has a header longer than the file")
    try:
        header = strict_json(bytes(buf[8 : 8 + n]), "header", _HeaderError)
    except _HeaderError as e:
        raise DamagedFile(f"{path} has an unreadable header ({e})") from None
    if not isinstance(header, dict):
        raise DamagedFile(f"{path}: its header is a JSON {type(header).__name__}, not an "
                          "object of tensor names")
    if not isinstance(header.get("__metadata__", {}), dict):
        raise DamagedFile(f"{path}: its __metadata__ is not a JSON object")
    base = 8 + n
    entries = {name: _header_entry(path, name, info, from_name)
               for name, info in header.items() if name != "__metadata__"}
    at = 0
    for name, (dtype, shape, start, end) in sorted(entries.items(),
                                                   key=lambda kv: kv[1][2:]):
        itemsize = torch.empty((), dtype=dtype).element_size()
        if end - start != math.prod(shape) * itemsize:
            raise DamagedFile(f"{path}: tensor {name!r} of shape {shape} and dtype "
                              f"{dtype} needs {math.prod(shape) * itemsize} bytes, its "
                              f"data_offsets [{start}, {end}] give {end - start}")
        if start != at:
            raise DamagedFile(f"{path}: tensor {name!r} starts at byte {start} of the data, "
                              f"where {'the previous tensor ends at' if at else 'the data starts at'}"
                              f" {at}; tensors must tile the data region "
                              f"({'overlap' if start < at else 'gap'})")
        at = end
    if base + at != len(buf):
        raise DamagedFile(f"{path}: the tensors cover {at} bytes of data but the file holds "
                          f"{len(buf) - base}; the file was truncated or has bytes appended")
    out: dict[str, torch.Tensor] = {}
    for name, (dtype, shape, start, _end) in entries.items():
        numel = math.prod(shape)
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(buf, dtype=dtype, count=numel, offset=base + start).view(
                shape
            )
    return out


class _HeaderError(UserError):
    """How :func:`strict_json` reports a bad header here (turned into DamagedFile)."""
