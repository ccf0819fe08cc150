"""Reading bytes someone else made: bounded, regular files only, inside their container.

An archive, a Hugging Face directory and a tokenizer directory are handed over by someone
else, and every file in them may lie: a ``config.json`` that is a symbolic link to
``/dev/zero`` (a read that never ends), a FIFO (a read that never starts), a 3 GB sparse
file that costs nothing on disk, a name that climbs out with ``..`` or starts at ``/``.
The readers of each container use these few helpers so the rule is the same everywhere:

- :func:`read_file` opens without following into a special file (a FIFO opens without
  blocking, then anything but a regular file is refused) and reads at most ``limit``
  bytes by streaming (:func:`read_at_most`), never "read it all, then check";
- :func:`inside` resolves a name given inside a container against the container and
  refuses one that is absolute, climbs out, or is a link leading out;
- :func:`sha256_file` hashes by streaming, in constant memory;
- :func:`strict_json` parses JSON refusing duplicate keys (two readers of one file must not
  disagree on what it says; "last one wins" is how a second value is smuggled past a check).

Errors are raised as the caller's typed error class (an :class:`~stoker.errors.UserError`
subclass, so bad input is exit 2), naming the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from stoker.errors import UserError

__all__ = ["MAX_JSON_BYTES", "MAX_TOKENIZER_BYTES", "DuplicateKey", "inside",
           "no_duplicate_keys", "open_regular", "read_at_most",
           "read_file", "sha256_file", "size_text", "strict_json"]

MiB = 1 << 20
# manifests, configs, indexes, lineage records, tokenizer markers: kilobytes in practice
MAX_JSON_BYTES = 16 * MiB
# one tokenizer file (tokenizer.json, a SentencePiece .model): the largest public ones
# (256k-token vocabularies) are about 35 MB
MAX_TOKENIZER_BYTES = 64 * MiB
_CHUNK = 1 * MiB

ErrorType = type[UserError]


def size_text(n: int) -> str:
    """``16 MiB`` / ``2.0 GiB`` / ``512 bytes`` for a message."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n} bytes"


def read_at_most(f: BinaryIO, limit: int, what: str, error: ErrorType = UserError) -> bytes:
    """All of ``f`` when it holds at most ``limit`` bytes; else ``error``, having read at
    most ``limit + 1`` bytes (a stream that never ends costs one chunk at a time)."""
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = f.read(min(_CHUNK, limit + 1 - got))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        got += len(chunk)
    raise error(f"{what} is larger than {size_text(limit)}, the most stoker reads for it; "
                "refusing to read it (it is not a file stoker wrote, or it was altered)")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def open_regular(path: str | os.PathLike[str], what: str, error: ErrorType = UserError
                 ) -> BinaryIO:
    """``path`` opened for reading, refused unless it is a regular file.

    Opened with ``O_NONBLOCK`` so a FIFO does not hang the open, then checked on the open
    descriptor (``fstat``), so nothing can be swapped in between the check and the read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} does not exist") from None
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise error(f"{what}: not a valid path (it holds a NUL byte)") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{what} is a {_kind(st.st_mode)}, not a regular file; refusing to read it")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_file(path: str | os.PathLike[str], limit: int, what: str,
              error: ErrorType = UserError) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see :func:`read_at_most`)."""
    with open_regular(path, what, error) as f:
        try:
            return read_at_most(f, limit, what, error)
        except OSError as e:
            raise error(f"cannot read {what}: {e.strerror}") from None


def sha256_file(path: str | os.PathLike[str], what: str, error: ErrorType = UserError) -> str:
    """SHA-256 of a regular file, streamed (constant memory whatever its size)."""
    h = hashlib.sha256()
    with open_regular(path, what, error) as f:
        try:
            while chunk := f.read(8 * MiB):
                h.update(chunk)
        except OSError as e:
            raise error(f"cannot read {what}: {e.strerror}") from None
    return h.hexdigest()


def inside(root: str | os.PathLike[str], name: Any, what: str,
           error: ErrorType = UserError) -> Path:
    """``root / name`` for a ``name`` found inside a container, refused unless it stays in.

    Refused: a non-string or empty name, an absolute or drive path, a backslash, a ``..``
    that climbs above ``root``, and a name whose resolved path (links followed) leaves
    ``root``. The returned path is the resolved one, so what is checked is what is read.
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise error(f"{what}: expected a file name inside {root}, got {name!r}")
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise error(f"{what}: {name!r} is an absolute path; names inside {root} must be "
                    "relative to it, refusing to read outside")
    base = Path(root).resolve()
    parts = PurePosixPath(name).parts
    depth = 0
    for p in parts:
        depth += -1 if p == ".." else (0 if p == "." else 1)
        if depth < 0:
            raise error(f"{what}: {name!r} climbs out of {root} with '..'; refusing to read "
                        "outside")
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise error(f"{what}: {name!r} leads out of {root} (to {target}, through a link); "
                    "refusing to read outside")
    return target


class DuplicateKey(ValueError):
    """Raised by :func:`no_duplicate_keys`; ``key`` is the repeated key."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json``'s ``object_pairs_hook`` that raises :class:`DuplicateKey` on a repeat."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


def strict_json(data: bytes | str, what: str, error: ErrorType = UserError) -> Any:
    """JSON parsed with duplicate keys refused (``error`` names the key), as is bad JSON."""
    try:
        return json.loads(data, object_pairs_hook=no_duplicate_keys)
    except DuplicateKey as e:
        raise error(f"{what}: duplicate key {e.key!r} (JSON that says two things; refusing "
                    "to pick one)") from None
    except RecursionError:
        raise error(f"{what}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{what} is not valid JSON ({e})") from None
