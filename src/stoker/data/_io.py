"""Small file helpers shared by the data modules: atomic writes and hashing.

Every file the data area writes goes through :func:`atomic_write_bytes` (temp file in the
same directory, fsync, ``os.replace``) so a crash leaves either the old file or the new one,
never a torn one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_BLOCK = 1 << 22


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes | memoryview, *, fsync: bool = True,
                       dir_fsync: bool = True) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fdatasync(f.fileno())
    os.replace(tmp, path)
    if fsync and dir_fsync:
        fsync_dir(path.parent)


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
