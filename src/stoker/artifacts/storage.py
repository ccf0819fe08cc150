"""The few storage primitives the registry needs, on any fsspec filesystem.

The one that matters is :meth:`Store.create_exclusive`: write a small object *only if it does
not exist yet*, atomically and with its full content. That is how versions are allocated
without a lock server:

- local disk: write a temp file, fsync, then ``os.link`` it to the final name (``link``
  fails with EEXIST if the name exists, and readers never see a half-written file);
- S3: ``PutObject`` with ``If-None-Match: *`` (S3 answers 412 when the key exists). Before
  the first exclusive create a registry checks once that the endpoint honours it, and
  refuses to publish if it does not;
- ``memory://``: one process owns the filesystem, so a process-wide lock is exact;
- anything else: :class:`RegistryError` -- we fail loudly rather than race.
"""
from __future__ import annotations

import json
import os
import posixpath
import threading
import uuid
from typing import Any

from stoker.atomic import atomic_write_bytes, check_dir_path
from stoker.atomic import fsync_dir as _fsync_dir
from stoker.errors import RegistryError

_MEMORY_LOCK = threading.Lock()
_S3_CHECKED: dict[str, bool] = {}


class Store:
    """An fsspec filesystem plus a root path, with atomic JSON reads/writes."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = str(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise RegistryError(f"Cannot open registry {self.url!r}: {e}") from e
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        self.protocol = protocols[0]
        self.is_local = "file" in protocols or "local" in protocols
        self.is_s3 = self.protocol in ("s3", "s3a")
        self.root = root.rstrip("/") if root not in ("/", "") else root
        if self.is_local:
            self.root = os.path.abspath(self.root)
            check_dir_path(self.root, "registry")  # a file in the way: exit 2, not ENOTDIR

    # -- paths -------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def display(self, path: str) -> str:
        """A URL a user can paste (``s3://bucket/key``, ``/local/path``)."""
        if self.is_local:
            return path
        return f"{self.protocol}://{path.lstrip('/')}" if self.protocol != "memory" else f"memory://{path}"

    # -- reads -------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes | None:
        try:
            if self.is_local:
                with open(path, "rb") as f:
                    return f.read()
            if self.is_s3:
                return _s3_get(self.fs, path)
            return self.fs.cat_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_json(self, path: str) -> dict[str, Any] | None:
        """Parse JSON (never anything that could execute code); None when absent."""
        data = self.read_bytes(path)
        if data is None:
            return None
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RegistryError(f"Corrupted registry file {self.display(path)}: {e}") from e
        if not isinstance(obj, dict):
            raise RegistryError(f"Corrupted registry file {self.display(path)}: not a JSON object")
        return obj

    def exists(self, path: str) -> bool:
        if self.is_local:
            return os.path.exists(path)
        if self.is_s3:  # one HEAD on the key; fs.exists would also list a "directory"
            return _s3_head(self.fs, path)
        return self.fs.exists(path)

    def listdir(self, path: str) -> list[str]:
        """Base names directly under ``path`` ([] when absent)."""
        if self.is_local:
            try:
                return sorted(os.listdir(path))
            except FileNotFoundError:
                return []
        try:
            self.fs.invalidate_cache(path)
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries)

    # -- writes ------------------------------------------------------------------------
    def write_bytes_atomic(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Create or replace ``path`` so that readers see the old or the new content only.

        ``durable=False`` skips fsync: for hints whose loss or staleness is harmless."""
        if self.is_local:
            atomic_write_bytes(path, data, fsync=durable, dir_fsync=False)
            return
        # Remote (fsspec) filesystems: not stoker.atomic, which renames local files; a single
        # PUT is atomic on object stores, and memory:// swaps a bytes object.
        self.fs.pipe_file(path, data)

    def write_json_atomic(self, path: str, obj: dict[str, Any]) -> None:
        self.write_bytes_atomic(path, _dumps(obj))

    def create_exclusive(self, path: str, obj: dict[str, Any]) -> bool:
        """Write ``obj`` at ``path`` only if nothing is there. True if we created it."""
        data = _dumps(obj)
        if self.is_local:
            return _local_create_exclusive(path, data)
        if self.protocol == "memory":
            with _MEMORY_LOCK:
                if self.fs.exists(path):
                    return False
                self.fs.pipe_file(path, data)
                return True
        if self.protocol in ("s3", "s3a"):
            self._check_s3_conditional_writes()
            return _s3_put_if_absent(self.fs, path, data)
        raise RegistryError(
            f"The {self.protocol}:// backend of {self.url!r} offers no exclusive create that "
            "stoker can rely on, so two publishers could claim the same version. Refusing to "
            "publish. Use a local path, s3:// (conditional PUT), or memory://."
        )

    def delete(self, path: str, recursive: bool = False) -> None:
        try:
            if self.is_local and not recursive:
                os.unlink(path)
            else:
                self.fs.rm(path, recursive=recursive)
        except FileNotFoundError:
            pass

    def _check_s3_conditional_writes(self) -> None:
        """Prove once per bucket that the endpoint refuses a second ``If-None-Match`` PUT."""
        bucket = self.root.split("/", 1)[0]
        endpoint = (getattr(self.fs, "client_kwargs", None) or {}).get("endpoint_url", "")
        key = f"{endpoint}|{bucket}"
        if _S3_CHECKED.get(key):
            return
        probe = self.path(".stoker", "probes", f"{uuid.uuid4().hex}.json")
        # different bytes: a 412 whose object holds our own bytes counts as ours (a retry)
        first = _s3_put_if_absent(self.fs, probe, b'{"probe": 1}')
        second = _s3_put_if_absent(self.fs, probe, b'{"probe": 2}')
        self.delete(probe)
        if not (first and not second):
            raise RegistryError(
                f"The S3 endpoint behind {self.url!r} ignores conditional writes "
                "(PUT with If-None-Match: * overwrote an existing object), so versions could "
                "be lost under concurrent publishers. Refusing to publish; use an endpoint "
                "that supports S3 conditional writes (AWS S3 does since Aug 2024)."
            )
        _S3_CHECKED[key] = True


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode("utf-8")


def _local_create_exclusive(path: str, data: bytes) -> bool:
    # Not stoker.atomic: a rename would silently replace a version another publisher just
    # claimed. The complete temp file is hard-linked to ``path`` instead, which fails when
    # ``path`` exists (the exclusive create the registry's versioning relies on).
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # atomic, fails if ``path`` exists; content is already complete
        created = True
    except FileExistsError:
        created = False
    except OSError as e:  # a filesystem without hard links: O_EXCL is still exclusive
        created = _excl_fallback(path, data, e)
    finally:
        os.unlink(tmp)
    if created:
        _fsync_dir(d)
    return created


def _excl_fallback(path: str, data: bytes, why: OSError) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return True


def _s3_put_if_absent(fs: Any, path: str, data: bytes) -> bool:
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)
    try:
        sync(fs.loop, fs._call_s3, "put_object", Bucket=bucket, Key=key, Body=data,
             IfNoneMatch="*")
    except Exception as e:  # noqa: BLE001 - classify below; anything else is re-raised
        code = _error_code(e)
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409") \
                or isinstance(e, FileExistsError):
            # botocore retries a PUT whose reply was lost; the retry then meets our own
            # object. Its bytes say whose it is (a version record carries its creation time
            # to the microsecond and its own manifest path): the same bytes are ours.
            return _s3_get(fs, path) == data
        raise RegistryError(f"S3 conditional PUT of {path} failed: {e}") from e
    fs.invalidate_cache(posixpath.dirname(path))
    return True


def _s3_get(fs: Any, path: str) -> bytes | None:
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)
    try:
        resp = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key)
        return sync(fs.loop, resp["Body"].read)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - only "no such key" means absent
        if _error_code(e) in ("NoSuchKey", "404"):
            return None
        raise


def _s3_head(fs: Any, path: str) -> bool:
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)
    try:
        sync(fs.loop, fs._call_s3, "head_object", Bucket=bucket, Key=key)
        return True
    except FileNotFoundError:
        return False
    except Exception as e:  # noqa: BLE001 - only "not found" means absent
        if _error_code(e) in ("NoSuchKey", "404", "NotFound"):
            return False
        raise


def _error_code(e: BaseException) -> str:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            err = resp.get("Error", {})
            code = str(err.get("Code", "")) or str(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code:
                return code
        e = e.__cause__ or e.__context__
    return ""
