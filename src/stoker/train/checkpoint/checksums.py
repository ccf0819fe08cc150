"""Checksums of checkpoint files, computed while the bytes are written or read.

The default is CRC-32 (``zlib``, ~3 GB/s): it detects truncation and flipped bits, which is
the threat here; ``"sha256"`` gives a cryptographic digest at about a third of the speed;
``"none"`` records sizes only.
"""
from __future__ import annotations

import zlib
from typing import Any

__all__ = ["ALGORITHMS", "Hasher", "file_record"]

ALGORITHMS = ("crc32", "sha256", "none")


class Hasher:
    """Incremental checksum over the bytes written to or read from one file.

    With ``background=True`` the updates run, in order, on one helper thread: zlib and
    hashlib release the GIL on large buffers, so checksumming overlaps with the write
    system calls instead of adding to them.
    """

    def __init__(self, algo: str, *, background: bool = False):
        self.algo = algo
        self._crc = 0
        self._h: Any = None
        if algo == "sha256":
            import hashlib

            self._h = hashlib.sha256()
        elif algo not in ("crc32", "none"):  # pragma: no cover - validated in the manager
            raise ValueError(f"unknown checksum {algo!r}")
        self._pool: Any = None
        self._pending: list[Any] = []
        if background and algo != "none":
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="stoker-ckpt-hash")

    def _update(self, data: Any) -> None:
        if self.algo == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        elif self._h is not None:
            self._h.update(data)

    def update(self, data: Any) -> None:
        if self.algo == "none":
            return
        if self._pool is not None:
            self._pending.append(self._pool.submit(self._update, data))
        else:
            self._update(data)

    def close(self) -> None:
        """Wait for queued updates (re-raising their errors) and stop the helper thread."""
        if self._pool is not None:
            try:
                for fut in self._pending:
                    fut.result()
            finally:
                self._pending.clear()
                self._pool.shutdown(wait=True)
                self._pool = None

    def hexdigest(self) -> str:
        self.close()
        if self.algo == "crc32":
            return f"{self._crc:08x}"
        if self._h is not None:
            return self._h.hexdigest()
        return ""


def file_record(path: Any, algo: str) -> dict[str, Any]:
    """``{"size": N, algo: digest}`` of a file already on disk, read in 16 MB chunks.

    Used for files another writer produced (DCP's shard files), so their sizes and
    checksums go into the commit marker like those of the files stoker writes itself.
    """
    hasher = Hasher(algo)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            size += len(chunk)
            hasher.update(chunk)
    rec: dict[str, Any] = {"size": size}
    if algo != "none":
        rec[algo] = hasher.hexdigest()
    return rec
