"""Small file helpers shared by the data modules: atomic writes and hashing.

Every file the data area writes goes through :func:`atomic_write_bytes` (temp file in the
same directory, fsync, ``os.replace``) so a crash leaves either the old file or the new one,
never a torn one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from stoker.atomic import atomic_write_bytes, fsync_dir  # noqa: F401 - re-exported for the data modules

_BLOCK = 1 << 22


def atomic_write_json(path: Path, obj: Any, *, fsync: bool = True, dir_fsync: bool = True) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync, dir_fsync=dir_fsync)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(_BLOCK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
