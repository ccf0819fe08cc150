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
*looks* loadable; a truncated or bit-flipped file must be reported, with the previous good
checkpoint, instead of silently training from garbage; and loading an untrusted checkpoint
must not run code (no pickle anywhere).

One module per job:

- :mod:`.layout`: step directory names, commit markers, ``find_latest``,
  ``resolve_checkpoint`` (the one way every caller finds a checkpoint);
- :mod:`.checksums`: CRC-32 / SHA-256 computed while bytes are written or read;
- :mod:`.tensors`: the safetensors and JSON files on disk;
- :mod:`.codec`: the state tree <-> JSON with tensor references;
- :mod:`.load`: loading and verifying, and the "corrupted, use this one instead" errors;
- :mod:`.manager`: :class:`CheckpointManager` (atomic save, queries, pruning);
- :mod:`.model_shapes`: whether a checkpoint's weights fit a model;
- :mod:`.sharded`: FSDP2 checkpoints whose model and optimizer shards each rank writes
  with ``torch.distributed.checkpoint`` into ``dcp/`` (resharded or consolidated on load).

Saves can also run in the background (:meth:`CheckpointManager.save` with
``background=True``): one staging copy, at most one save in flight, the marker last.
"""
from __future__ import annotations

from stoker.train.checkpoint.layout import (
    FORMAT,
    MARKER,
    STATE_FILE,
    find_latest,
    is_committed,
    read_marker,
    resolve_checkpoint,
    step_dir_name,
)
from stoker.train.checkpoint.load import load_checkpoint, verify_checkpoint
from stoker.train.checkpoint.manager import CheckpointInfo, CheckpointManager
from stoker.train.checkpoint.model_shapes import check_model_compatible

__all__ = [
    "FORMAT",
    "MARKER",
    "STATE_FILE",
    "CheckpointInfo",
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
