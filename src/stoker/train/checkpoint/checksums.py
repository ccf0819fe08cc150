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

    The helper is a plain daemon thread fed through a ``queue.SimpleQueue``, not a
    ``ThreadPoolExecutor``: a Ctrl-C that lands while the caller waits in
    ``Future.result()`` (the KeyboardInterrupt is raised inside a ``threading``
    condition's wait) could leave the pool's locks in a state where the shutdown that
    follows waits forever (seen once in ~47 interrupted ``stoker pack`` runs, the worker
    stuck in the pool's ``_idle_semaphore.release()``). ``SimpleQueue.put`` is one C call
    that a signal cannot cut in half, and a daemon thread left behind by an interrupted
    close never holds up the process's exit.
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
        self._queue: Any = None
        self._thread: Any = None
        self._error: BaseException | None = None
        if background and algo != "none":
            import queue
            import threading

            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._drain, name="stoker-ckpt-hash",
                                            daemon=True)
            self._thread.start()

    def _update(self, data: Any) -> None:
        if self.algo == "crc32":
            self._crc = zlib.crc32(data, self._crc)
        elif self._h is not None:
            self._h.update(data)

    def _drain(self) -> None:
        """The helper thread: apply queued updates in order until the ``None`` sentinel;
        after an error, keep draining (so the caller never blocks) and report it at close."""
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._update(data)
                except BaseException as exc:  # noqa: BLE001 - re-raised by close()
                    self._error = exc

    def update(self, data: Any) -> None:
        if self.algo == "none":
            return
        if self._queue is not None:
            self._queue.put(data)
        else:
            self._update(data)

    def close(self) -> None:
        """Wait for queued updates (re-raising their errors) and stop the helper thread.

        A Ctrl-C during the wait propagates at once; the sentinel is already queued, so
        the daemon thread finishes the queue and ends on its own."""
        if self._thread is not None:
            thread, self._thread = self._thread, None
            self._queue.put(None)
            thread.join()
            if self._error is not None:
                error, self._error = self._error, None
                raise error

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
