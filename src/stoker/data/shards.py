"""The on-disk layout of a prepared dataset, and reading it back.

::

    out/
      metadata.json            written last: its presence means "finished"
      tokenizer/               loadable by its own library (see stoker.data.tokenizers)
      train/shard-00000.bin    flat little-endian token ids (uint16 or uint32)
      train/shard-00000.idx    int64 little-endian start offsets of documents in that shard
      valid/... test/...
      .stoker-prepare/         only while unfinished: plan.json + one marker per done unit

No pickles anywhere: shards are raw arrays, everything else is JSON.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stoker.data._io import read_json
from stoker.errors import DataError

FORMAT = "stoker.tokens/1"
WORK_DIR = ".stoker-prepare"
SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"val": "valid", "validation": "valid", "eval": "valid"}


def shard_name(unit: int) -> str:
    return f"shard-{unit:05d}"


def pick_dtype(vocab_size: int, requested: str = "auto") -> str:
    """uint16 when every id fits, else uint32; an explicit dtype too small is an error."""
    fits16 = vocab_size <= 1 << 16
    if requested in ("auto", "", None):
        return "uint16" if fits16 else "uint32"
    if requested == "uint16":
        if not fits16:
            raise DataError(f"the tokenizer has {vocab_size} tokens, more than uint16 holds (65536); "
                            "use --dtype uint32 or --dtype auto")
        return "uint16"
    if requested == "uint32":
        return "uint32"
    raise DataError(f"unknown --dtype {requested!r}; use auto, uint16 or uint32")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a finished prepared dataset; a clear error for anything else."""
    p = Path(path).expanduser()
    meta = p / "metadata.json"
    if not meta.is_file():
        if (p / WORK_DIR).is_dir():
            raise DataError(f"{p} is an unfinished prepared dataset; re-run the same "
                            "`stoker data prepare` command to finish it")
        if not p.exists():
            raise DataError(f"prepared dataset {p} does not exist; create it with `stoker data prepare`")
        raise DataError(f"{p} is not a prepared dataset (no metadata.json); create it with "
                        "`stoker data prepare`")
    try:
        md = read_json(meta)
    except ValueError as e:
        raise DataError(f"{meta}: not valid JSON ({e})") from e
    if md.get("format") != FORMAT:
        raise DataError(f"{meta}: unknown dataset format {md.get('format')!r} (expected {FORMAT})")
    return md


def resolve_split(md: dict[str, Any], split: str, where: str) -> str:
    split = SPLIT_ALIASES.get(split, split)
    if split not in md["splits"]:
        raise DataError(f"{where}: no split {split!r} (have: {', '.join(md['splits'])})")
    return split
