"""Content manifests: relative path, size and SHA-256 of every file of an artifact.

Recorded once at save (hashing while copying, so data is read once) and checked by
``verify``, which reports missing, changed and unexpected files. Works on any fsspec
filesystem.
"""
from __future__ import annotations

import hashlib
import io
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from stoker.atomic import is_temp_name
from stoker.errors import ArtifactError

CHUNK = 1 << 20
SIDECAR = ".stoker-artifact.json"  # written next to published local data; never in a manifest


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    size: int
    sha256: str


class Manifest(BaseModel):
    """What a version contains. ``single_file`` means the artifact path is one file."""

    model_config = ConfigDict(extra="forbid")
    files: list[ManifestEntry]
    single_file: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


@dataclass
class VerifyReport:
    """Outcome of checking stored files against a manifest."""

    root: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # a version is immutable: a file added after publishing fails it as a changed one does
        return not self.missing and not self.changed and not self.extra

    def summary(self) -> str:
        if self.ok:
            return f"ok: {self.checked} files match the manifest ({self.root})"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing: {', '.join(self.missing[:5])}")
        if self.changed:
            parts.append(f"{len(self.changed)} changed: {', '.join(self.changed[:5])}")
        if self.extra:
            parts.append(f"{len(self.extra)} not in the manifest (added after publishing): "
                         f"{', '.join(self.extra[:5])}")
        return f"FAILED ({self.root}): " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "root": self.root, "checked": self.checked,
                "missing": self.missing, "changed": self.changed, "extra": self.extra}


def _is_own_file(rel: str) -> bool:
    """Stoker's own files inside a published directory, never part of its content: the
    sidecar (rewritten by every publish of that directory) and any temp file or staged
    directory of an atomic write. Another process publishing the same directory writes
    its sidecar's temp file there at any moment; listing it made a concurrent copy fail
    on a file that had just been renamed away."""
    parts = rel.split("/")
    return parts[-1] == SIDECAR or any(is_temp_name(p) for p in parts)


def list_files(fs: Any, root: str) -> tuple[list[tuple[str, str]], bool]:
    """Return ([(relative posix path, full path)], single_file) for a file or directory,
    without stoker's own sidecar and temp files (:func:`_is_own_file`)."""
    if not fs.exists(root):
        raise ArtifactError(f"Artifact path does not exist: {root}")
    if fs.isfile(root):
        return [(posixpath.basename(root.rstrip("/")), root)], True
    base = root.rstrip("/")
    out = []
    for full in sorted(fs.find(base)):
        rel = posixpath.relpath(full, base) if not full.startswith(base + "/") else full[len(base) + 1:]
        if _is_own_file(rel):
            continue
        out.append((rel, full))
    return out, False


def hash_stream(fobj: Any, sink: Any = None) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = fobj.read(CHUNK)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return size, h.hexdigest()


def build_manifest(fs: Any, root: str) -> Manifest:
    """Hash files in place (reference mode)."""
    files, single = list_files(fs, root)
    entries = []
    for rel, full in files:
        with fs.open(full, "rb") as f:
            size, sha = hash_stream(f)
        entries.append(ManifestEntry(path=rel, size=size, sha256=sha))
    return Manifest(files=entries, single_file=single)


def copy_with_manifest(src_fs: Any, src: str, dst_fs: Any, dst: str) -> Manifest:
    """Copy a file or directory to ``dst`` (a directory), hashing as it goes."""
    files, single = list_files(src_fs, src)
    entries = []
    made: set[str] = set()
    for rel, full in files:
        target = posixpath.join(dst, rel)
        parent = posixpath.dirname(target)
        if parent not in made:
            dst_fs.makedirs(parent, exist_ok=True)
            made.add(parent)
        with src_fs.open(full, "rb") as fin, dst_fs.open(target, "wb") as fout:
            size, sha = hash_stream(fin, fout)
            _fsync(fout)
        entries.append(ManifestEntry(path=rel, size=size, sha256=sha))
    return Manifest(files=entries, single_file=single)


def _fsync(fobj: Any) -> None:
    """Data must be on disk before the version marker that makes it visible."""
    fileno = getattr(fobj, "fileno", None)
    if fileno is None:
        return  # object stores: the PUT has completed when close() returns
    try:
        fobj.flush()
        os.fsync(fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def verify_manifest(fs: Any, root: str, manifest: Manifest) -> VerifyReport:
    """Check every manifest entry under ``root`` (a directory, or the file itself)."""
    report = VerifyReport(root=root)
    for entry in manifest.files:
        full = root if manifest.single_file else posixpath.join(root.rstrip("/"), entry.path)
        report.checked += 1
        try:
            with fs.open(full, "rb") as f:
                size, sha = hash_stream(f)
        except FileNotFoundError:
            report.missing.append(entry.path)
            continue
        if size != entry.size or sha != entry.sha256:
            report.changed.append(entry.path)
    if not manifest.single_file and fs.isdir(root):
        known = {e.path for e in manifest.files}
        files, _ = list_files(fs, root)
        report.extra = [rel for rel, _ in files if rel not in known]
    return report
