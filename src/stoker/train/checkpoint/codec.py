"""The checkpoint state tree <-> JSON, with tensors set aside for the safetensors files.

A state is a tree of numbers, strings, bools, None, lists, tuples, dicts with any key type,
bytes, paths, numpy arrays and tensors. :func:`encode_state` turns it into strict JSON in
which every tensor is a reference ``{"__tensor__": "FILE:NAME"}`` and non-JSON values carry
a one-key tag (``__tuple__``, ``__dict__``, ``__float__``, ``__bytes__``, ``__ndarray__``);
the tensors of each top-level key go to one file (``model.safetensors``, ...). Tensors that
share memory (tied weights) are stored once and restored as one. :func:`decode` reverses it.
Nothing is pickled, so reading a checkpoint cannot run code.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stoker.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DcpRef", "TensorSink", "decode", "encode_state", "tensor_refs"]

TAGS = frozenset({"__tensor__", "__tuple__", "__dict__", "__float__", "__ndarray__", "__bytes__",
                  "__dcp__"})


@dataclass(frozen=True)
class DcpRef:
    """A tensor kept in the step's sharded ``dcp/`` files under ``name`` (``{"__dcp__": name}``
    in ``state.json``); :mod:`.sharded` swaps these for tensors when loading."""

    name: str


class TensorSink:
    """Collects the tensors of one top-level key while its subtree is encoded."""

    def __init__(self, fname: str, key: Any = None):
        self.fname = fname
        self.key = key  # the top-level state key whose tensors these are
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


def encode_state(state: Mapping[Any, Any]) -> tuple[bytes, list[TensorSink]]:
    """``state.json``'s bytes and the tensor files (one sink per top-level key with tensors).

    Raises CheckpointError naming the first value that cannot be saved; nothing has touched
    the disk by then.
    """
    sinks: list[TensorSink] = []
    used: set[str] = set()
    tree: dict[Any, Any] = {}
    for key, value in state.items():
        sink = TensorSink(_file_for_key(key, used), key)
        tree[key] = _encode(value, [], sink, f"state[{key!r}]")
        if sink.tensors:
            sinks.append(sink)
        else:
            used.discard(sink.fname)
    if all(isinstance(k, str) for k in tree) and not (TAGS & set(tree)):
        top: Any = tree
    else:
        top = {"__dict__": [[_encode(k, [], TensorSink(""), "key"), v] for k, v in tree.items()]}
    return json.dumps(top, separators=(",", ":"), allow_nan=False).encode(), sinks


def _encode(obj: Any, parts: list[str], sink: TensorSink, where: str) -> Any:
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
    if isinstance(obj, DcpRef):
        return {"__dcp__": obj.name}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not (TAGS & set(obj)):
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


def decode(obj: Any, tensors: Mapping[str, Any]) -> Any:
    """The state tree from its JSON form, with tensor references replaced by ``tensors``."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, val), = obj.items()
        if tag == "__tensor__":
            return tensors[val]
        if tag == "__tuple__":
            return tuple(decode(v, tensors) for v in val)
        if tag == "__dict__":
            return {decode(k, tensors): decode(v, tensors) for k, v in val}
        if tag == "__float__":
            return float(val)
        if tag == "__dcp__" and isinstance(val, str):
            return DcpRef(val)
        if tag == "__bytes__":
            return base64.b64decode(val)
        if tag == "__ndarray__":
            import numpy as np

            return np.frombuffer(base64.b64decode(val["data"]), dtype=np.dtype(val["dtype"])).reshape(
                val["shape"]
            ).copy()
    return {k: decode(v, tensors) for k, v in obj.items()}


def tensor_refs(obj: Any) -> Iterator[str]:
    """Every ``FILE:NAME`` tensor reference in an encoded tree."""
    if isinstance(obj, list):
        for v in obj:
            yield from tensor_refs(v)
    elif isinstance(obj, dict):
        if len(obj) == 1 and "__tensor__" in obj:
            yield obj["__tensor__"]
        else:
            for v in obj.values():
                yield from tensor_refs(v)


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
