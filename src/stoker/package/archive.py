"""The ``.stoker`` container: one uncompressed tar with a SHA-256 manifest, read safely.

Layout (member names are POSIX paths relative to the archive root)::

    config.json          what restore builds: model config, tokenizer dir, eval section
    weights.safetensors  the model's tensors (safetensors only; nothing is unpickled)
    tokenizer/...        the tokenizer's own files (loadable without stoker)
    files/...            other files the config referred to (paths rewritten to members)
    lineage.json         where it came from: checkpoint, step, metrics, data, run config
    MANIFEST.json        format, and size + SHA-256 of every other member (written last)

Why a tar and no compression: any tool lists and unpacks it, and weights do not compress;
reading a member is one seek, and hashing/loading runs at disk speed.

Reading never trusts the file: every member must be a regular file with a relative name
(no absolute path, no ``..``, no link, no device, no duplicate, no GNU sparse member, no
name that is also another member's directory), every member must be in the manifest with
its exact size and lie wholly inside the file, and a member's bytes are checked against
their SHA-256 before anything uses them. Pickle-format members are refused by name and by
content.

Every read is bounded before it starts, by the size the tar header declares (which the
manifest must agree with): the manifest and the JSON members at
:data:`~stoker.untrusted.MAX_JSON_BYTES`, tokenizer files at
:data:`~stoker.untrusted.MAX_TOKENIZER_BYTES`; weights and ``files/`` members are mapped
(never copied), only their own byte range. A sparse member is refused because its header
may claim gigabytes that ``tarfile`` would expand from a few bytes on disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import mmap
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from stoker.atomic import atomic_file
from stoker.errors import ArchiveError
from stoker.untrusted import (
    MAX_JSON_BYTES,
    MAX_TOKENIZER_BYTES,
    read_at_most,
    size_text,
    strict_json,
)

__all__ = ["FORMAT", "MANIFEST", "ArchiveReader", "ArchiveWriter", "is_archive"]

FORMAT = "stoker-archive/1"
MANIFEST = "MANIFEST.json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy",
                    ".npz", ".pdparams")
_CHUNK = 8 << 20
# config, weights, lineage, a tokenizer's few files and the files a config refers to
MAX_MEMBERS = 10_000


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file that looks like a tar (what ``pack`` writes)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            f.seek(257)
            return f.read(5) == b"ustar"
    except OSError:
        return False


def _check_name(name: str, where: str) -> str:
    """A safe member name, or an ArchiveError saying why not."""
    if not name or name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{where}: member {name!r} has an absolute or non-POSIX path; "
                           "refusing to read this archive")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in parts) or not parts:
        raise ArchiveError(f"{where}: member {name!r} points outside the archive ('..'); "
                           "refusing to read this archive")
    if name.lower().endswith(_PICKLE_SUFFIXES):
        raise ArchiveError(f"{where}: member {name!r} is a pickle-format file; stoker "
                           "archives hold weights as safetensors only, and pickles can run "
                           "code when loaded")
    return "/".join(parts)


class ArchiveWriter:
    """Build an archive member by member; the file appears (atomically) on :meth:`close`.

    Use as a context manager: leaving the block with an error leaves nothing behind.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._members: dict[str, dict[str, Any]] = {}
        self._cm = atomic_file(self.path)
        self._f: BinaryIO = self._cm.__enter__()
        try:
            self._tar = tarfile.open(fileobj=self._f, mode="w", format=tarfile.PAX_FORMAT)
        except BaseException as exc:  # Ctrl-C here: no __exit__ would remove the temp file
            self._cm.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        name = _check_name(name, str(self.path))
        if name in self._members:
            raise ArchiveError(f"{self.path}: member {name!r} added twice")
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0  # reproducible bytes
        return info

    def add_bytes(self, name: str, data: bytes | memoryview) -> None:
        """Add one member from memory."""
        data = memoryview(data).cast("B")
        self.add_parts(name, [data], len(data))

    def add_parts(self, name: str, parts: Iterable[Any], size: int) -> None:
        """Add one member written straight from ``parts`` (buffers, e.g. each tensor's own
        memory; ``size`` bytes in all), SHA-256 computed on a helper thread as they go out."""
        from stoker.train.checkpoint.checksums import Hasher

        info = self._info(name, size)
        self._f.write(info.tobuf(self._tar.format, self._tar.encoding, self._tar.errors))
        hasher = Hasher("sha256", background=size >= _CHUNK)
        written = 0
        try:
            for part in parts:
                mv = memoryview(part).cast("B")
                for i in range(0, len(mv), _CHUNK):
                    chunk = mv[i : i + _CHUNK]
                    hasher.update(chunk)
                    self._f.write(chunk)
                    written += len(chunk)
        finally:
            hasher.close()
        if written != size:
            raise ArchiveError(f"{self.path}: member {name!r} was announced as {size} bytes "
                               f"but {written} were written")
        pad = (-size) % tarfile.BLOCKSIZE
        if pad:
            self._f.write(b"\0" * pad)
        self._tar.offset += tarfile.BLOCKSIZE * (1 + (size + tarfile.BLOCKSIZE - 1)
                                                 // tarfile.BLOCKSIZE)
        self._members[info.name] = {"size": size, "sha256": hasher.hexdigest()}

    def add_json(self, name: str, obj: Any) -> None:
        self.add_bytes(name, json.dumps(obj, indent=2, sort_keys=True).encode("utf-8"))

    def add_file(self, name: str, path: str | os.PathLike[str]) -> None:
        self.add_bytes(name, Path(path).read_bytes())

    def add_tree(self, prefix: str, root: str | os.PathLike[str]) -> list[str]:
        """Add every regular file under ``root`` as ``prefix/<relative path>``."""
        root = Path(root)
        added = []
        for p in sorted(root.rglob("*")):
            if p.is_symlink():
                raise ArchiveError(f"{p} is a symbolic link; archives hold regular files only")
            if p.is_file():
                name = f"{prefix}/{p.relative_to(root).as_posix()}"
                self.add_file(name, p)
                added.append(name)
        return added

    def close(self, meta: dict[str, Any]) -> Path:
        """Write the manifest last and publish the file."""
        manifest = {"format": FORMAT, **meta, "members": dict(sorted(self._members.items()))}
        data = json.dumps(manifest, indent=2).encode("utf-8")
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._cm.__exit__(None, None, None)
        return self.path

    def abort(self, exc: BaseException) -> None:
        try:
            self._tar.close()
        except (OSError, tarfile.TarError):
            pass
        self._cm.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, et: Any, exc: Any, tb: Any) -> None:
        if exc is not None and not self._tar.closed:
            self.abort(exc)


class ArchiveReader:
    """Open an archive and check its structure and manifest before any member is used."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        where = str(self.path)
        if not self.path.is_file():
            raise ArchiveError(f"model archive {where} does not exist (make one with "
                               "`stoker pack --checkpoint RUN_DIR --output model.stoker`)")
        try:
            tar = tarfile.open(self.path, mode="r:")
            infos: list[tarfile.TarInfo] = []
            while (info := tar.next()) is not None:  # counted: headers cost memory too
                infos.append(info)
                if len(infos) > MAX_MEMBERS:
                    tar.close()
                    raise ArchiveError(f"{where} has more than {MAX_MEMBERS} members; a "
                                       "stoker archive holds a handful, refusing to read it")
        except (tarfile.TarError, OSError) as e:
            raise ArchiveError(f"{where} is not a stoker model archive (an uncompressed tar "
                               f"written by `stoker pack`): {e}") from None
        self._tar = tar
        self.entries: dict[str, tarfile.TarInfo] = {}
        file_size = self.path.stat().st_size
        for info in infos:
            if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
                raise ArchiveError(f"{where}: member {info.name!r} is a GNU sparse file "
                                   f"(claiming {size_text(info.size)} from a few bytes on "
                                   "disk); archives hold regular files only, refusing to "
                                   "read this archive")
            kind = _kind(info)
            if kind != "file":
                raise ArchiveError(f"{where}: member {info.name!r} is a {kind}; archives hold "
                                   "regular files only, refusing to read this archive")
            name = _check_name(info.name, where)
            if name in self.entries:
                raise ArchiveError(f"{where}: member {name!r} appears twice")
            if info.offset_data + info.size > file_size:
                raise ArchiveError(f"{where}: member {name!r} ({size_text(info.size)}) runs "
                                   "past the end of the file; the archive was truncated")
            self.entries[name] = info
        for name in self.entries:
            for parent in PurePosixPath(name).parents:
                if str(parent) in self.entries:
                    raise ArchiveError(f"{where}: member {str(parent)!r} is a file and also "
                                       f"the directory of member {name!r}; refusing to read "
                                       "this archive")
        if MANIFEST not in self.entries:
            raise ArchiveError(f"{where} has no {MANIFEST}; it was not written by `stoker "
                               "pack` or was cut short")
        raw = self._raw(MANIFEST, MAX_JSON_BYTES)
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        manifest = strict_json(raw, f"{where}: {MANIFEST}", ArchiveError)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ArchiveError(f"{where}: unknown archive format "
                               f"{manifest.get('format') if isinstance(manifest, dict) else '?'}"
                               f" (this stoker reads {FORMAT})")
        listed = manifest.get("members")
        if not isinstance(listed, dict):
            raise ArchiveError(f"{where}: {MANIFEST} lists no members")
        present = set(self.entries) - {MANIFEST}
        extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
        if extra or missing:
            raise ArchiveError(f"{where}: members do not match {MANIFEST} (not listed: {extra}; "
                               f"missing: {missing}); the archive was altered")
        for name, rec in listed.items():
            if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str) or \
                    self.entries[name].size != rec.get("size"):
                raise ArchiveError(f"{where}: member {name!r} has size "
                                   f"{self.entries[name].size}, {MANIFEST} says "
                                   f"{rec.get('size') if isinstance(rec, dict) else '?'}; "
                                   "the archive was altered or truncated")
        self.manifest = manifest
        self._verified: set[str] = set()

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.entries if n != MANIFEST and n.startswith(prefix))

    def _bound(self, name: str, limit: int, kind: str) -> None:
        """Refuse a member whose header declares more than ``limit`` bytes, before reading."""
        size = self.entries[name].size
        if size > limit:
            raise ArchiveError(f"{self.path}: member {name!r} declares {size_text(size)}; a "
                               f"{kind} is at most {size_text(limit)}, refusing to read it")

    def _raw(self, name: str, limit: int) -> bytes:
        """An unverified member (only the manifest, which verifies the rest), bounded."""
        self._bound(name, limit, "manifest")
        f = self._tar.extractfile(self.entries[name])
        assert f is not None  # regular files only
        return read_at_most(f, limit, f"{self.path}: member {name!r}", ArchiveError)

    def view(self, name: str) -> memoryview:
        """A member's bytes, verified against the manifest (memory-mapped, copy-on-write)."""
        if name not in self.entries or name == MANIFEST:
            raise ArchiveError(f"{self.path} has no member {name!r} "
                               f"(members: {', '.join(self.names()) or 'none'})")
        info = self.entries[name]
        with open(self.path, "rb") as f:
            if info.size == 0:
                data = memoryview(b"")
            else:  # only this member's pages are mapped
                start = info.offset_data - info.offset_data % mmap.ALLOCATIONGRANULARITY
                skip = info.offset_data - start
                mm = mmap.mmap(f.fileno(), skip + info.size, access=mmap.ACCESS_COPY,
                               offset=start)
                data = memoryview(mm)[skip : skip + info.size]
        if name not in self._verified:
            digest = _sha256(data)
            want = self.manifest["members"][name].get("sha256")
            if digest != want:
                raise ArchiveError(f"{self.path}: member {name!r} does not match its SHA-256 in "
                                   f"{MANIFEST} (got {digest[:12]}..., expected "
                                   f"{str(want)[:12]}...); the archive was tampered with or "
                                   "corrupted and was not used")
            self._verified.add(name)
        return data

    def read(self, name: str) -> bytes:
        return bytes(self.view(name))

    def read_json(self, name: str, limit: int = MAX_JSON_BYTES) -> Any:
        """A JSON member (at most ``limit`` bytes, duplicate keys refused), verified."""
        if name in self.entries:
            self._bound(name, limit, "JSON member")
        return strict_json(bytes(self.view(name)), f"{self.path}: member {name!r}",
                           ArchiveError)

    def extract(self, prefix: str, dest: str | os.PathLike[str], *,
                limit: int = MAX_TOKENIZER_BYTES) -> Path:
        """Write the verified members under ``prefix/`` into ``dest`` (their relative paths),
        each at most ``limit`` bytes (checked on every header before anything is written)."""
        dest = Path(dest)
        for name in self.names(prefix + "/"):
            self._bound(name, limit, f"member under {prefix}/")
        for name in self.names(prefix + "/"):
            target = dest / name[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.view(name))
        return dest

    def iter_members(self) -> Iterator[tuple[str, int]]:
        for n in self.names():
            yield n, self.entries[n].size


def _kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "file"
    if info.issym():
        return f"symbolic link (to {info.linkname!r})"
    if info.islnk():
        return f"hard link (to {info.linkname!r})"
    if info.isdev():
        return "device file"
    if info.isdir():
        return "directory entry"
    return "special file"


def _sha256(data: memoryview) -> str:
    return hashlib.sha256(data).hexdigest()
