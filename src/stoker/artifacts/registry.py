"""The artifact registry: versions, aliases and ``latest`` on any fsspec filesystem.

Layout under the registry root (a local dir, ``file://``, ``memory://``, ``s3://bucket/p``)::

    artifacts/<name>/objects/<id>/data/...        copied data (copy mode)
    artifacts/<name>/objects/<id>/manifest.json   path, size, sha256 of every file
    artifacts/<name>/versions/v<N>.json           the version record = the commit marker
    artifacts/<name>/aliases/<alias>.json         {"version": N}
    artifacts/<name>/LATEST                       a hint: some published version number

Publishing writes data and manifest first under a fresh ``<id>``, then claims ``v<N>`` by an
*exclusive create* of its record (see :mod:`stoker.artifacts.storage`); a publisher that
loses the race tries ``N+1``. A version is visible exactly when its record exists, and a
killed publisher leaves only an unreferenced ``objects/<id>``. Versions therefore form the
contiguous range ``v1..vK`` (removal writes a tombstone, never a gap), which is what lets
``latest`` be found in O(1) requests: read the hint, probe ``v<hint+1>`` (galloping if the
hint is stale), and step back over tombstones. The hint can lag behind under concurrent
publishers but never points past a visible version, so ``latest`` is always exact.
"""
from __future__ import annotations

import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from stoker.artifacts.manifest import (
    SIDECAR, Manifest, VerifyReport, build_manifest, copy_with_manifest, verify_manifest,
)
from stoker.artifacts.names import LATEST, ArtifactRef, parse_ref, validate_alias, validate_name
from stoker.artifacts.storage import Store
from stoker.artifacts.types import Artifact
from stoker.errors import ArtifactError, RegistryError

if TYPE_CHECKING:  # pragma: no cover
    from stoker.artifacts.lineage_graph import LineageNode

A = TypeVar("A", bound=Artifact)
RECORD_FORMAT = 1
MODES = ("copy", "reference")
OBJECT_TIME = "%Y%m%dT%H%M%S"  # object ids start with their UTC creation time (gc reads it)


class ArtifactVersion(BaseModel):
    """One published version: where its data and manifest are, and its artifact record."""

    model_config = ConfigDict(extra="forbid")
    format: int = RECORD_FORMAT
    name: str
    version: int
    type: str = "Artifact"
    created_at: datetime | None = None
    mode: str = "copy"
    data: str | None = None  # copy: relative to the name's folder; reference: the source URL
    source: str | None = None  # where the data was when it was published
    manifest: str | None = None  # relative to the name's folder
    manifest_sha256: str | None = None
    files: int = 0
    bytes: int = 0
    artifact: dict[str, Any] = Field(default_factory=dict)
    deleted: bool = False
    aliases: list[str] = Field(default_factory=list)  # filled when read, never stored

    @property
    def uri(self) -> str:
        return f"art://{self.name}:v{self.version}"


class ArtifactEntry(BaseModel):
    """A name in the registry: its newest version and its aliases."""

    model_config = ConfigDict(extra="forbid")
    name: str
    type: str | None = None
    latest: int | None = None
    versions: int = 0
    aliases: dict[str, int] = Field(default_factory=dict)


class ArtifactRegistry(ABC):
    """What every registry backend offers."""

    url: str

    @abstractmethod
    def publish(self, artifact: A, name: str, *, mode: str = "copy", aliases: Iterable[str] = ()) -> A: ...
    @abstractmethod
    def resolve(self, ref: str | ArtifactRef) -> ArtifactVersion: ...
    @abstractmethod
    def load(self, ref: str | ArtifactRef, cls: type[A] = Artifact) -> A: ...  # type: ignore[assignment]
    @abstractmethod
    def list(self) -> list[ArtifactEntry]: ...
    @abstractmethod
    def versions(self, name: str) -> list[ArtifactVersion]: ...
    @abstractmethod
    def set_alias(self, ref: str, alias: str) -> ArtifactVersion: ...
    @abstractmethod
    def remove_alias(self, name: str, alias: str) -> None: ...
    @abstractmethod
    def delete(self, ref: str) -> ArtifactVersion: ...
    @abstractmethod
    def verify(self, ref: str) -> VerifyReport: ...


class FsspecRegistry(ArtifactRegistry):
    """A registry on any fsspec URL. ``Registry("/data/reg")``, ``Registry("s3://b/reg")``."""

    def __init__(self, url: str | Path, *, storage_options: dict[str, Any] | None = None) -> None:
        self.store = Store(str(url), storage_options)
        self.url = str(url)

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    # -- paths -------------------------------------------------------------------------
    def _p(self, name: str, *parts: str) -> str:
        return self.store.path("artifacts", name, *parts)

    def _marker(self, name: str, version: int) -> str:
        return self._p(name, "versions", f"v{version}.json")

    # -- publish -----------------------------------------------------------------------
    def publish(self, artifact: A, name: str, *, mode: str = "copy", aliases: Iterable[str] = ()) -> A:
        try:
            return self._publish(artifact, name, mode=mode, aliases=aliases)
        except OSError as exc:  # a full disk mid-copy: a message, not a traceback (exit 1)
            from stoker.errors import write_failure

            raise write_failure(
                exc, f"art://{name} into the registry {self.url}",
                "Free space on that disk or choose another registry; a version is visible "
                "only once its marker is written, and `stoker artifacts gc` removes the data "
                "a failed publish copied.") from exc

    def _publish(self, artifact: A, name: str, *, mode: str, aliases: Iterable[str]) -> A:
        import fsspec

        validate_name(name)
        aliases = [validate_alias(a) for a in aliases]
        if mode not in MODES:
            raise ArtifactError(f"Unknown publish mode {mode!r}; use one of {', '.join(MODES)}.")
        source = str(artifact.path)
        src_fs, src_path = fsspec.core.url_to_fs(source)
        if not isinstance(artifact.path, str):
            src_path = os.path.abspath(src_path)
        obj_id = f"{datetime.now(timezone.utc).strftime(OBJECT_TIME)}-{uuid.uuid4().hex[:12]}"
        obj_rel = posixpath.join("objects", obj_id)
        if mode == "copy":
            manifest = copy_with_manifest(src_fs, src_path, self.store.fs, self._p(name, obj_rel, "data"))
            data = posixpath.join(obj_rel, "data")
            if manifest.single_file:
                data = posixpath.join(data, manifest.files[0].path)
        else:
            manifest = build_manifest(src_fs, src_path)
            data = source if isinstance(artifact.path, str) else src_path
        manifest_rel = posixpath.join(obj_rel, "manifest.json")
        self.store.write_json_atomic(self._p(name, manifest_rel), manifest.model_dump(mode="json"))

        from stoker.artifacts.provenance import tracking_info

        producer = artifact.producer or tracking_info()
        absolute = {k: Path(os.path.abspath(v)) for k, v in artifact if isinstance(v, Path)}
        record = artifact.model_copy(update={**absolute, "producer": producer, "name": name}).to_record()
        hint = self._read_hint(name)
        version = self._top(name, hint) + 1
        while True:
            record["version"] = version
            entry = ArtifactVersion(
                name=name, version=version, type=artifact.type,
                created_at=datetime.now(timezone.utc), mode=mode, data=data,
                source=source if isinstance(artifact.path, str) else src_path,
                manifest=manifest_rel, manifest_sha256=manifest.digest(),
                files=len(manifest.files), bytes=manifest.total_bytes, artifact=record,
            )
            payload = entry.model_dump(mode="json", exclude={"aliases"})
            if self.store.create_exclusive(self._marker(name, version), payload):
                break
            version += 1
        if version > hint:
            self._write_hint(name, version, hint)
        for alias in aliases:
            self._write_alias(name, alias, version)
        entry.aliases = aliases
        saved = self._to_artifact(entry, type(artifact))
        if mode == "copy" and not isinstance(artifact.path, str) and Path(src_path).is_dir():
            self._write_sidecar(Path(src_path), saved)
        return saved

    def _write_sidecar(self, directory: Path, saved: Artifact) -> None:
        """Leave ``.stoker-artifact.json`` so ``Artifact.load(dir)`` finds the saved record."""
        from stoker.atomic import atomic_write_text

        try:  # no fsync: a hint beside the data; the version record in the registry is the truth
            atomic_write_text(directory / SIDECAR, saved.to_pipe_json() + "\n", fsync=False)
        except OSError:
            pass  # read-only source: the registry copy is the truth; nothing half-written

    # -- latest ------------------------------------------------------------------------
    def _read_hint(self, name: str) -> int:
        raw = self.store.read_bytes(self._p(name, "LATEST"))
        try:
            return max(0, int(raw.decode().strip())) if raw else 0
        except ValueError:
            return 0

    def _write_hint(self, name: str, version: int, seen: int) -> None:
        current = self._read_hint(name)
        if version > current:
            # A hint: stale, torn or lost, `latest` is still exact (see _top), so no fsync.
            self.store.write_bytes_atomic(self._p(name, "LATEST"), str(version).encode(), durable=False)

    def _exists(self, name: str, version: int) -> bool:
        return version >= 1 and self.store.exists(self._marker(name, version))

    def _top(self, name: str, hint: int) -> int:
        """Highest existing version number (0 if none), starting from a hint <= it.

        Costs 2 existence checks when the hint is current, O(log gap) when it lags.
        """
        lo = hint if hint > 0 and self._exists(name, hint) else 0
        if not self._exists(name, lo + 1):
            return lo
        lo, step = lo + 1, 1
        while self._exists(name, lo + step):  # gallop past a stale hint
            lo += step
            step *= 2
        hi = lo + step  # known missing; lo known present
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._exists(name, mid):
                lo = mid
            else:
                hi = mid
        return lo

    def _read_version(self, name: str, version: int) -> ArtifactVersion | None:
        raw = self.store.read_json(self._marker(name, version))
        if raw is None:
            return None
        raw.pop("aliases", None)
        try:
            return ArtifactVersion.model_validate(raw)
        except ValueError as e:
            raise RegistryError(f"Corrupted version record art://{name}:v{version}: {e}") from e

    # -- resolve -----------------------------------------------------------------------
    def resolve(self, ref: str | ArtifactRef) -> ArtifactVersion:
        r = parse_ref(ref) if isinstance(ref, str) else ref
        if r.version is not None:
            entry = self._read_version(r.name, r.version)
            if entry is None:
                raise self._missing(r)
        elif r.alias == LATEST:
            entry = self._latest(r.name)
        else:
            raw = self.store.read_json(self._p(r.name, "aliases", f"{r.alias}.json"))
            if raw is None:
                raise self._missing(r)
            entry = self._read_version(r.name, int(raw["version"]))
            if entry is None:
                raise ArtifactError(f"{r} points to v{raw['version']}, which does not exist.")
        if entry.deleted:
            raise ArtifactError(f"{entry.uri} was removed from {self.url}.")
        return entry

    def _latest(self, name: str) -> ArtifactVersion:
        top = self._top(name, self._read_hint(name))
        for v in range(top, 0, -1):
            entry = self._read_version(name, v)
            if entry is not None and not entry.deleted:
                return entry
        raise self._missing(ArtifactRef(name, alias=LATEST))

    def _missing(self, r: ArtifactRef) -> ArtifactError:
        names = self.store.listdir(self.store.path("artifacts"))
        if r.name not in names:
            hint = f" Known names: {', '.join(names[:20])}." if names else " The registry is empty."
            return ArtifactError(f"No artifact named {r.name!r} in registry {self.url}.{hint}")
        if r.alias == LATEST:
            return ArtifactError(f"{r.name!r} has no visible version in registry {self.url}.")
        if r.version is not None:
            top = self._top(r.name, self._read_hint(r.name))
            return ArtifactError(f"{r} does not exist in {self.url} (versions v1..v{top}).")
        known = [a[:-5] for a in self.store.listdir(self._p(r.name, "aliases")) if a.endswith(".json")]
        return ArtifactError(
            f"{r}: no alias {r.alias!r} for {r.name!r} in {self.url}"
            + (f" (aliases: {', '.join(known)})." if known else " (no aliases set).")
        )

    def load(self, ref: str | ArtifactRef, cls: type[A] = Artifact) -> A:  # type: ignore[assignment]
        return self._to_artifact(self.resolve(ref), cls)

    def _data_url(self, entry: ArtifactVersion) -> str:
        if entry.mode == "copy":
            return self.store.display(self._p(entry.name, entry.data or ""))
        return entry.data or ""

    def _to_artifact(self, entry: ArtifactVersion, cls: type[A]) -> A:
        record = dict(entry.artifact)
        record.update(name=entry.name, version=entry.version)
        if entry.mode == "copy" and entry.source:
            record = _rebase(record, entry.source, self._data_url(entry))
        return cls.from_record(record, source=entry.uri)  # type: ignore[return-value]

    # -- listing -----------------------------------------------------------------------
    def list(self) -> list[ArtifactEntry]:
        out = []
        for name in self.store.listdir(self.store.path("artifacts")):
            # versions a user can load: removed ones (tombstones) keep their number taken but
            # are not counted, and a name with none (all removed, or a publish that failed
            # before its first marker) is not listed
            live = [v for v in self.versions(name) if not v.deleted]
            if not live:
                continue
            latest = live[-1]
            out.append(ArtifactEntry(
                name=name, type=latest.type, latest=latest.version, versions=len(live),
                aliases=self.aliases(name),
            ))
        return out

    def aliases(self, name: str) -> dict[str, int]:
        out = {}
        for fn in self.store.listdir(self._p(name, "aliases")):
            if fn.endswith(".json"):
                raw = self.store.read_json(self._p(name, "aliases", fn))
                if raw is not None:
                    out[fn[:-5]] = int(raw["version"])
        return out

    def versions(self, name: str) -> list[ArtifactVersion]:
        validate_name(name)
        top = self._top(name, self._read_hint(name))
        al = self.aliases(name)
        out = []
        for v in range(1, top + 1):
            entry = self._read_version(name, v)
            if entry is not None:
                entry.aliases = sorted(a for a, n in al.items() if n == v)
                out.append(entry)
        return out

    # -- aliases -----------------------------------------------------------------------
    def _write_alias(self, name: str, alias: str, version: int) -> None:
        self.store.write_json_atomic(
            self._p(name, "aliases", f"{alias}.json"),
            {"version": version, "set_at": datetime.now(timezone.utc).isoformat()},
        )

    def set_alias(self, ref: str, alias: str) -> ArtifactVersion:
        """Point ``alias`` at the version ``ref`` resolves to (creating or moving it)."""
        validate_alias(alias)
        entry = self.resolve(ref)
        self._write_alias(entry.name, alias, entry.version)
        return entry

    def remove_alias(self, name: str, alias: str) -> None:
        validate_name(name)
        validate_alias(alias)
        path = self._p(name, "aliases", f"{alias}.json")
        if not self.store.exists(path):
            raise self._missing(ArtifactRef(name, alias=alias))
        self.store.delete(path)

    # -- removal and verification ------------------------------------------------------
    def delete(self, ref: str) -> ArtifactVersion:
        """Remove one version: its data goes, a tombstone keeps the number taken."""
        entry = self.resolve(ref)
        tomb = entry.model_dump(mode="json", exclude={"aliases"})
        tomb.update(deleted=True, artifact={}, files=0, bytes=0)
        self.store.write_json_atomic(self._marker(entry.name, entry.version), tomb)
        for alias, v in self.aliases(entry.name).items():
            if v == entry.version:
                self.store.delete(self._p(entry.name, "aliases", f"{alias}.json"))
        if entry.mode == "copy" and entry.manifest:
            self.store.delete(self._p(entry.name, posixpath.dirname(entry.manifest)), recursive=True)
        return entry

    def verify(self, ref: str) -> VerifyReport:
        """Re-hash the stored (copy) or referenced files and compare with the manifest."""
        import fsspec

        entry = self.resolve(ref)
        raw = self.store.read_json(self._p(entry.name, entry.manifest or ""))
        if raw is None:
            return VerifyReport(root=entry.uri, missing=["manifest.json"])
        manifest = Manifest.model_validate(raw)
        if manifest.digest() != entry.manifest_sha256:
            return VerifyReport(root=entry.uri, changed=["manifest.json"])
        if entry.mode == "copy":
            root = self._p(entry.name, entry.data or "")
            fs = self.store.fs
        else:
            fs, root = fsspec.core.url_to_fs(entry.data or "")
        report = verify_manifest(fs, root, manifest)
        report.root = self._data_url(entry)
        return report

    def collect_garbage(
        self, name: str | None = None, *, older_than: timedelta = timedelta(hours=24),
        dry_run: bool = False, now: datetime | None = None,
    ) -> list[str]:
        """Remove ``objects/<id>`` folders that no version record points at, and return them.

        A publisher killed between writing its data and claiming a version leaves such a
        folder; nothing ever reads it. Folders younger than ``older_than`` (by the UTC time
        in their id) are kept, because a publisher still copying its data has not claimed
        its version yet: the grace period must exceed the longest publish. Folders whose
        name does not start with a stoker object id are left alone.
        """
        now = now or datetime.now(timezone.utc)
        names = [validate_name(name)] if name else self.store.listdir(self.store.path("artifacts"))
        removed = []
        for n in names:
            objects = self.store.listdir(self._p(n, "objects"))
            if not objects:
                continue
            referenced = set()
            for v in range(1, self._top(n, self._read_hint(n)) + 1):
                raw = self.store.read_json(self._marker(n, v))
                if raw and raw.get("manifest") and not raw.get("deleted"):
                    referenced.add(posixpath.basename(posixpath.dirname(raw["manifest"])))
            for obj in objects:
                made = _object_time(obj)
                if obj in referenced or made is None or now - made < older_than:
                    continue
                path = self._p(n, "objects", obj)
                if not dry_run:
                    self.store.delete(path, recursive=True)
                removed.append(self.store.display(path))
        return removed

    def lineage(self, ref: str) -> "LineageNode":
        """The upstream graph of ``ref``: the artifacts its producer used, recursively."""
        from stoker.artifacts.lineage_graph import build_lineage

        return build_lineage(self, ref)


Registry = FsspecRegistry


def _object_time(obj_id: str) -> datetime | None:
    """The UTC creation time stoker writes at the start of an object id, or None."""
    try:
        return datetime.strptime(obj_id[:15], OBJECT_TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _rebase(record: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """Point every path field under the original location at the registry copy."""
    old = old.rstrip("/")

    def fix(value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return new + value[len(old):]
        return value

    out = {}
    for k, v in record.items():
        if k in ("producer", "metadata", "extra_fields"):
            out[k] = v
        elif isinstance(v, list):
            out[k] = [fix(x) for x in v]
        else:
            out[k] = fix(v)
    return out


# -- process default ---------------------------------------------------------------------
@dataclass
class KitConfig:
    """The process default set by ``stoker.init`` (:func:`stoker.track.session.init`), or
    the embedded default."""

    backend: str
    registry_path: str
    project: str | None = None
    entity: str | None = None
    initialized: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    registry: ArtifactRegistry | None = None


_CONFIG: KitConfig | None = None


def default_registry_path() -> str:
    from stoker.data.corpus import stoker_home

    return os.environ.get("STOKER_REGISTRY") or str(stoker_home() / "registry")


def set_default(config: KitConfig) -> None:
    """Make ``config`` (and its registry) the process default; ``stoker.init`` calls this."""
    global _CONFIG
    _CONFIG = config


def get_config() -> KitConfig:
    """The active configuration: what ``stoker.init`` set, or the embedded default."""
    if _CONFIG is not None:
        return _CONFIG
    return KitConfig(backend="fsspec", registry_path=default_registry_path(), initialized=False)


def is_initialized() -> bool:
    return _CONFIG is not None


def reset() -> None:
    """Forget the process default (tests, long-lived notebooks)."""
    global _CONFIG
    _CONFIG = None


def default_registry() -> ArtifactRegistry:
    if _CONFIG is not None and _CONFIG.registry is not None:
        return _CONFIG.registry
    return FsspecRegistry(default_registry_path())


def resolve_registry(registry: ArtifactRegistry | str | Path | None) -> ArtifactRegistry:
    if registry is None:
        return default_registry()
    if isinstance(registry, ArtifactRegistry):
        return registry
    if isinstance(registry, (str, Path)):
        return FsspecRegistry(str(registry))
    raise ArtifactError(f"registry must be a Registry or a URL, not {type(registry).__name__}.")
