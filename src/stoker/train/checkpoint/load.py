"""Loading and verifying a step directory, and saying clearly when it is damaged.

Loading re-checks the size and checksum of every file it reads, so a truncated or
bit-flipped file is reported, together with the previous checkpoint that verifies
completely, instead of silently training from garbage. It also refuses model or optimizer
tensors that hold NaN or inf (a marker saying ``finite`` can be forged; the tensors cannot),
naming the file and tensor and the last finite checkpoint, unless ``allow_nonfinite``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stoker.errors import CheckpointError
from stoker.train.checkpoint.codec import decode, tensor_refs
from stoker.train.checkpoint.layout import (
    MARKER,
    STATE_FILE,
    STEP_RE,
    committed,
    read_marker,
    step_dir_name,
)
from stoker.train.checkpoint.sharded import (
    fill_refs,
    load_dcp,
    local_tensor,
    read_dcp_metadata,
    ref_names,
)
from stoker.train.checkpoint.tensors import (
    DamagedFile,
    describe_nonfinite,
    nonfinite,
    parse_safetensors,
    read_verified,
)

__all__ = ["FINITE_KEYS", "load_checkpoint", "sharded_model_shapes", "verify_checkpoint"]

# State keys whose tensors must be finite to be saved or loaded (callback state may hold inf).
FINITE_KEYS = ("model", "optimizer")


def verify_checkpoint(path: str | os.PathLike[str]) -> None:
    """Check the marker, and every file's size and checksum; raise CheckpointError if not."""
    path = Path(path)
    marker = _require_marker(path)
    algo = marker.get("checksum", "none")
    for fname, rec in marker["files"].items():
        _read(path, fname, rec, algo)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: Any = "cpu",
    keys: Iterable[str] | None = None,
    allow_nonfinite: bool = False,
    into: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a step directory back into the state dict that was saved.

    A sharded checkpoint (its marker has ``"sharded"``; :mod:`.sharded`) keeps model and
    optimizer tensors in DCP files. Without ``into`` they are consolidated into full CPU
    tensors in this process (no process group needed: ``stoker eval``/``generate``/
    ``pack``/``export hf`` and a resume at world size 1 read it so). With ``into`` (DCP key
    -> tensor or DTensor of the current model, see :func:`.sharded.split_for_dcp`), DCP
    loads each rank's slices straight into those tensors, resharding to this world size;
    every rank must call it then. Either way each DCP file is verified (size, checksum)
    before DCP reads it, and DCP's pickled metadata only after its checksum matched.

    ``keys`` limits loading to some top-level entries (``("model", "config")`` for
    evaluation reads neither the optimizer file nor its checksum). Sizes and checksums of
    every file read are verified first; any mismatch raises :class:`CheckpointError` naming
    the file and offering the previous good checkpoint. Model and optimizer tensors holding
    NaN or inf raise :class:`CheckpointError` too, unless ``allow_nonfinite`` (debugging).
    """
    path = Path(path)
    marker = _require_marker(path)
    algo = marker.get("checksum", "none")
    files: dict[str, Any] = marker["files"]
    if STATE_FILE not in files:
        raise _corrupt(path, f"its marker does not list {STATE_FILE}")
    try:
        tree = json.loads(bytes(_read(path, STATE_FILE, files[STATE_FILE], algo)))
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
    refs = set(tensor_refs(tree))
    tensors: dict[str, Any] = {}
    for fname in sorted({r.split(":", 1)[0] for r in refs}):
        if fname not in files:
            raise _corrupt(path, f"{STATE_FILE} refers to {fname}, which its marker does not list")
        buf = _read(path, fname, files[fname], algo)
        try:
            parsed = parse_safetensors(path, fname, buf)
        except DamagedFile as exc:
            raise _corrupt(path, str(exc)) from None
        for name, t in parsed.items():
            tensors[f"{fname}:{name}"] = t
    missing = refs - tensors.keys()
    if missing:
        raise _corrupt(path, f"tensors {sorted(missing)[:5]} are missing from their files")
    if not allow_nonfinite:
        _check_finite(path, tree, tensors)
    if map_location is not None and str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    state = decode(tree, tensors)
    names = ref_names(state)
    if names:
        state = _fill_sharded(path, marker, state, names, into, allow_nonfinite, map_location)
    return state


def sharded_model_shapes(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Parameter name -> a meta tensor of its full shape, for a sharded checkpoint's model
    (from DCP's verified metadata, no data read); None for a full-state checkpoint. Lets
    :func:`~.model_shapes.check_model_compatible` name mismatches before anything loads."""
    import torch
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    path = Path(path)
    marker = _require_marker(path)
    if not isinstance(marker.get("sharded"), dict):
        return None
    try:
        md = read_dcp_metadata(path, marker["files"], marker.get("checksum", "none"))
    except DamagedFile as exc:
        raise _corrupt(path, str(exc)) from None
    return {name[len("model/"):]: torch.empty(tuple(m.size), dtype=m.properties.dtype,
                                              device="meta")
            for name, m in md.state_dict_metadata.items()
            if name.startswith("model/") and isinstance(m, TensorStorageMetadata)}


def _fill_sharded(path: Path, marker: dict[str, Any], state: dict[str, Any], names: list[str],
                  into: Mapping[str, Any] | None, allow_nonfinite: bool, map_location: Any,
                  ) -> dict[str, Any]:
    """Replace the DCP references of a sharded checkpoint's state by loaded tensors."""
    if not isinstance(marker.get("sharded"), dict):
        raise _corrupt(path, f"{STATE_FILE} refers to sharded tensors but its marker is not "
                             "a sharded checkpoint's")
    algo = marker.get("checksum", "none")
    try:
        loaded = load_dcp(path, marker["files"], algo, names, into=into)
    except DamagedFile as exc:
        raise _corrupt(path, str(exc)) from None
    if not allow_nonfinite:
        checked = {n: local_tensor(t) for n, t in loaded.items()
                   if n.split("/", 1)[0] in FINITE_KEYS}
        bad = nonfinite(checked)
        if bad:
            details = "; ".join(f"DCP tensor '{n}' ({describe_nonfinite(checked[n])})"
                                for n in bad)
            raise CheckpointError(
                f"checkpoint {path} holds non-finite weights and was not loaded: {details}. "
                "To load it anyway for debugging, pass --allow-nonfinite (stoker eval, stoker "
                "generate) or checkpoint.allow_nonfinite=true (stoker train).")
    if into is None and map_location is not None and str(map_location) != "cpu":
        loaded = {k: v.to(map_location) for k, v in loaded.items()}
    return fill_refs(state, loaded)


def _check_finite(path: Path, tree: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Refuse model/optimizer tensors with NaN or inf, naming file and tensor."""
    pairs = tree["__dict__"] if set(tree) == {"__dict__"} else list(tree.items())
    refs = {r for k, v in pairs if k in FINITE_KEYS for r in tensor_refs(v)}
    bad = nonfinite({r: tensors[r] for r in sorted(refs)})
    if not bad:
        return
    details = "; ".join(
        f"{path / r.split(':', 1)[0]} tensor '{r.split(':', 1)[1]}' ({describe_nonfinite(tensors[r])})"
        for r in bad)
    prev = _previous_finite(path)
    offer = (f"The last finite checkpoint before it is {prev}; resume from it with resume={prev}."
             if prev is not None else f"There is no earlier finite checkpoint in {path.parent}.")
    raise CheckpointError(
        f"checkpoint {path} holds non-finite weights and was not loaded: {details}. {offer} "
        "To load it anyway for debugging, pass --allow-nonfinite (stoker eval, stoker "
        "generate) or checkpoint.allow_nonfinite=true (stoker train).")


def _previous_finite(path: Path) -> Path | None:
    """The newest checkpoint older than ``path`` whose marker says finite and that verifies."""
    return _previous_good(path, finite=True)


def _read(path: Path, fname: str, rec: Any, algo: str) -> Any:
    try:
        return read_verified(path, fname, rec, algo)
    except DamagedFile as exc:
        raise _corrupt(path, str(exc)) from None


def _previous_good(path: Path, *, finite: bool = False) -> Path | None:
    """The newest checkpoint older than ``path`` beside it that verifies completely (and,
    with ``finite``, whose marker says its state was finite)."""
    m = STEP_RE.match(path.name)
    if not m:
        return None
    step = int(m.group(1))
    for s, p, marker in reversed(committed(path.parent)):
        if s >= step or (finite and marker.get("finite") is not True):
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
