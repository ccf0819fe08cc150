"""Atomic, durable file writes shared by every area.

A crash, a ``kill -9`` or a full disk must leave either the old file or the new one, never a
torn one: write a temp file in the same directory, fsync it, ``os.replace`` it over the
target, then fsync the directory so the rename itself survives a power loss.
:func:`staged_dir` does the same for a directory that a library writes (a tokenizer).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from stoker.errors import UserError


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make renames inside ``path`` durable (a no-op where directories cannot be opened)."""
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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview, *,
                       fsync: bool = True, dir_fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once; the temp file is removed on failure."""
    with atomic_file(path, fsync=fsync, dir_fsync=dir_fsync) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary sibling name, then swap it in for ``target``.

    Readers never see a half-written directory: on success the old ``target`` (a file or
    a directory) is removed and the staged one renamed over it; on an error the staged
    directory is removed and ``target`` is left as it was (an error in the swap itself
    removes the staged directory too). (Two renames cannot replace a
    non-empty directory in one step, so a crash between removing the old one and the
    rename leaves no ``target`` rather than a torn one.)
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except BaseException:  # the swap failed (a full disk, a file in the way): no temp left
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(target.parent)


def is_temp_name(name: str) -> bool:
    """Whether a file or directory name is one of stoker's own temp names.

    :func:`atomic_file` writes ``.NAME.XXXXXXXX.tmp`` beside its target, :func:`staged_dir`
    builds ``.NAME.tmp-PID``, and checkpoints are staged as ``.tmp-...``. Whatever walks a
    directory another process may be writing into (publishing its files, a resume sweeping
    what a killed writer left) skips these: they are never content, and they come and go
    under the walker's feet.
    """
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name)


def control_char_problem(path: str, what: str) -> str | None:
    """Why ``path`` cannot name an output (it holds a control character), or None.

    A newline, tab, escape or other control character (and the Unicode line and paragraph
    separators) in an output path is almost always a paste or quoting accident, and it
    breaks every line-oriented record that names the path: the header comment of
    ``config.yaml`` (whose re-read then failed at publish with a YAML ScannerError),
    ``command.txt``, logs. So it is refused before anything is created.
    """
    import unicodedata

    for i, ch in enumerate(path):
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            name = {"\n": "a newline", "\t": "a tab", "\r": "a carriage return"}.get(ch) \
                or unicodedata.name(ch, "").lower() or f"U+{ord(ch):04X}"
            return (f"{what} {path!r} holds a control character ({name} at position "
                    f"{i}); remove it (an output path must be plain printable text)")
    return None


def check_dir_path(path: str | os.PathLike[str], what: str) -> None:
    """Refuse (UserError, exit 2) a directory path that is a file or lies under one, or
    that holds a control character (:func:`control_char_problem`).

    Called before any work, so ``--output-dir notes.txt`` fails at once with a message
    instead of an ``ENOTDIR`` traceback after minutes of work. A missing directory is fine:
    the writer creates it and its parents.
    """
    problem = control_char_problem(os.fspath(path), what)
    if problem:
        raise UserError(problem)
    p = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    for cand in (p, *p.parents):
        if cand.exists() or cand.is_symlink():
            if not cand.is_dir():
                where = "is a file" if cand == p else f"lies under {cand}, which is a file"
                raise UserError(f"{what} {path} {where}, not a directory; choose a directory "
                                "path (it is created if missing)")
            return


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, fsync: bool = True,
                dir_fsync: bool = True) -> Iterator[BinaryIO]:
    """Write a large file in pieces, all at once: ``with atomic_file(p) as f: f.write(...)``.

    The pieces go to a temp file beside ``path``; only when the block ends without an
    error is it fsynced and renamed over ``path``. On any error (or Ctrl-C) the temp file
    is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp, locked = _locked_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()  # every byte in the file before it gets its final name
            if fsync:
                os.fsync(f.fileno())
            if locked:  # renamed while still locked: no sweeper sees an unlocked live temp
                os.replace(tmp, path)
        if not locked:  # (where files cannot be renamed while open, there are no flocks)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync and dir_fsync:
        fsync_dir(path.parent)


def _flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False when it is held by
    another open file (a live writer) or the file system has no locks."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _locked_temp(path: Path) -> tuple[int, str, bool]:
    """A new temp file beside ``path`` (``.NAME.XXXXXXXX.tmp``) whose ``flock`` the writer
    holds until it ends, however it ends (the kernel drops the lock of a killed process).

    That lock is how :func:`remove_stale_temps` tells a temp a dead writer left from one
    being written now. A sweeper can take a temp for dead in the instant between its
    creation and its lock; the writer then finds its name gone and makes another.
    """
    for _ in range(3):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            if not _flock(fd):
                return fd, tmp, False  # no locks on this file system: nothing sweeps it either
            try:
                if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                    return fd, tmp, True
            except FileNotFoundError:
                pass
        except BaseException:  # Ctrl-C before the caller knows of it: leave nothing
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        os.close(fd)
    return fd, tmp, False  # pragma: no cover - three sweeps in a row: write unlocked


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files that killed writers of ``path`` left beside it; returns them.

    An :func:`atomic_file` ended by ``kill -9`` or SIGTERM (no Python cleanup runs) leaves
    its ``.NAME.XXXXXXXX.tmp``, possibly hundreds of MB, which nothing else would ever
    remove. A writer that re-creates ``path`` calls this first. Only temps whose writer is
    gone are removed: each is locked by its live writer (:func:`_locked_temp`), so a
    concurrent writer's temp is left alone, as is any file whose lock cannot be taken.
    """
    import re

    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(path.parent) if pattern.fullmatch(e.name)]
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _flock(fd) and os.path.samestat(os.fstat(fd), os.stat(entry.path)):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed
