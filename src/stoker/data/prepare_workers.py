"""The worker side of ``stoker data prepare``: the process pool and what it runs.

:mod:`stoker.data.prepare` plans (inputs, units, resume state) and commits (metadata last);
this module does the work on the inputs: scanning sources (SHA-256 and cut points), the
character-set pass, and one unit's tokenize -> split -> shard files -> commit marker, in
``workers`` processes or in the caller's process for one worker. A unit's bytes never
depend on which process ran it or how many there are.
"""
from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoker.atomic import atomic_write_bytes
from stoker.data._io import atomic_write_json
from stoker.data.shards import WORK_DIR, shard_name
from stoker.data.sources import ReadStats, Source, Unit, read_piece, scan_source
from stoker.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from stoker.data.prepare import Progress, ProgressFn


# -------------------------------------------------------------------------- in a worker

_W: dict[str, Any] = {}


def _die_with_parent(parent: int) -> None:
    """End this worker when the prepare that started it dies, however it dies.

    SIGINT reaches the whole foreground process group and the pool shuts down, but SIGTERM
    or ``kill -9`` of the parent alone left every worker running as an orphan (dozens of
    ~50 MB processes, found alive 20 minutes later). On Linux the kernel sends the worker
    SIGKILL when its parent exits (``PR_SET_PDEATHSIG``; the pool forks its workers from
    the thread that runs the prepare, which lives as long as the pool). SIGKILL, not
    SIGTERM: a forked worker inherits the parent's Python signal handlers, and a unit cut
    short loses nothing (shards are written atomically and a resume removes their temp
    files). A parent already gone before the call is caught by the ``getppid`` check.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc prctl: the getppid check still runs
            pass
    if os.getppid() != parent:
        os._exit(1)


def _worker_init(ctx: dict[str, Any]) -> None:
    if ctx.get("parent"):
        _die_with_parent(int(ctx["parent"]))
    os.environ.setdefault("RAYON_NUM_THREADS", str(ctx.get("threads", 1)))
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if ctx.get("threads", 1) > 1 else "false"
    from stoker.data.tokenizers import load_tokenizer

    _W.clear()
    _W.update(ctx)
    _W["sources"] = [Source(**s) for s in ctx["sources"]]
    _W["load_tokenizer"] = load_tokenizer


def _worker_run(unit_json: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    if _W.get("tokenizer_dir") != ctx["out"]:
        _W["tokenizer"] = _W["load_tokenizer"](Path(ctx["out"]) / "tokenizer")
        _W["tokenizer_dir"] = ctx["out"]
    return process_unit(Unit.from_json(unit_json), {**ctx, "tokenizer": _W["tokenizer"],
                                                      "sources": _W["sources"]})


def _scan_covers_chars(src: Source) -> bool:
    """A text file read whole (weight >= 1) gives its characters straight from the scan."""
    return src.format == "text" and src.weight >= 1


def _scan_some(items: list[tuple[int, dict[str, Any]]], shard_bytes: int, want_chars: bool):
    """Scan sources (SHA-256, cut points; characters when ``want_chars``). Runs in workers."""
    from stoker.data.tokenizers import CharSetBuilder

    b = CharSetBuilder() if want_chars else None
    results = []
    for i, d in items:
        src = Source(**d)
        cover = b is not None and _scan_covers_chars(src)
        ok = scan_source(src, shard_bytes, chars=b if cover else None)
        results.append((i, src.sha256, src.cuts, src.size, src.rows, bool(cover and ok)))
    return results, (b.state() if b is not None else None)


def _worker_chars(unit_jsons: list[dict[str, Any]], skip_bad_lines: bool) -> list[str]:
    units = [Unit.from_json(u) for u in unit_jsons]
    return sorted(_corpus_chars(_W["sources"], units, skip_bad_lines))


def _split_points(n: int, doc_starts, ratios: Sequence[float]) -> list[int]:
    """Cut a unit's token stream by ``ratios``; snap to a document boundary when one is near."""
    import numpy as np

    cuts, acc = [0], 0.0
    for r in ratios[:-1]:
        acc += r
        c = int(round(acc * n))
        if len(doc_starts) > 1:
            j = int(np.searchsorted(doc_starts, c))
            best = None
            for k in (j - 1, j):
                if 0 <= k < len(doc_starts):
                    d = int(doc_starts[k])
                    if best is None or abs(d - c) < abs(best - c):
                        best = d
            # snap only when close (1% of the unit) and no non-empty split becomes empty
            if best is not None and abs(best - c) <= 0.01 * n and (best > cuts[-1] or r == 0):
                c = best
        cuts.append(max(c, cuts[-1]))
    cuts.append(n)
    return cuts


def process_unit(unit: Unit, ctx: dict[str, Any]) -> dict[str, Any]:
    """Tokenize one unit and commit its shards atomically, then its marker. Returns the marker."""
    import numpy as np

    out = Path(ctx["out"])
    tok = ctx["tokenizer"]
    sources: list[Source] = ctx["sources"]
    dtype = np.dtype(ctx["dtype"]).newbyteorder("<")
    eos = tok.eos_id if ctx["append_eos"] else None
    stats = ReadStats()
    raw_ascii = hasattr(tok, "encode_joined")  # the char tokenizer maps ASCII bytes directly
    texts: list[str | bytes] = []
    starts_doc: list[bool] = []
    ends_doc: list[bool] = []
    for piece in unit.pieces:
        src = sources[piece.source]
        before = stats.documents
        for t in read_piece(src, piece, skip_bad_lines=ctx["skip_bad_lines"], stats=stats,
                            raw_ascii=raw_ascii):
            texts.append(t)
            if src.format == "text":
                starts_doc.append(piece.starts_doc)
                ends_doc.append(piece.ends_doc)
            else:
                starts_doc.append(True)
                ends_doc.append(True)
        del before
    joined = getattr(tok, "encode_joined", None)
    seqs = None if joined is not None else tok.encode_docs(texts)
    lengths = np.fromiter((len(q) for q in (texts if seqs is None else seqs)), dtype=np.int64,
                          count=len(texts))
    extra = np.asarray(ends_doc, dtype=np.int64) if eos is not None else np.zeros(len(texts), np.int64)
    sizes = lengths + extra
    offsets = np.zeros(len(texts), dtype=np.int64)
    if len(texts) > 1:
        np.cumsum(sizes[:-1], out=offsets[1:])
    if seqs is None:
        tokens = joined(texts, ends_doc, eos, dtype)
    else:
        tokens = np.empty(int(sizes.sum()), dtype=dtype)
        for q, o, n, e in zip(seqs, offsets.tolist(), lengths.tolist(), extra.tolist()):
            if n:
                tokens[o:o + n] = q
            if e:
                tokens[o + n] = eos
    if len(tokens) and int(tokens.max()) >= ctx["vocab_size"]:
        raise DataError(f"token id {int(tokens.max())} >= vocab size {ctx['vocab_size']}")
    doc_starts = offsets[np.asarray(starts_doc, dtype=bool)] if len(texts) else offsets
    # empty documents contribute nothing but could duplicate offsets
    doc_starts = np.unique(doc_starts[doc_starts < len(tokens)])
    cuts = _split_points(len(tokens), doc_starts, ctx["ratios"])
    marker: dict[str, Any] = {"unit": unit.index, "bytes": stats.bytes, "documents": stats.documents,
                              "bad_lines": stats.bad_lines, "tokens": int(len(tokens)), "shards": {}}
    for split, a, b in zip(ctx["splits"], cuts[:-1], cuts[1:]):
        if b <= a:
            continue
        part = np.ascontiguousarray(tokens[a:b])
        lo, hi = np.searchsorted(doc_starts, [a, b])
        idx = doc_starts[lo:hi] - a
        if len(idx) == 0 or idx[0] != 0:
            idx = np.concatenate(([0], idx))
        idx = idx.astype("<i8")
        d = out / split
        d.mkdir(exist_ok=True)
        name = shard_name(unit.index)
        data = memoryview(part).cast("B")
        # No fsync per unit (waiting for the disk here would stall tokenizing): the shard's
        # writeback is only started (see _start_writeback), a resume re-checks each committed
        # shard's CRC-32, and the finished dataset is fsynced once before metadata.json.
        _write_shard(d / f"{name}.bin", data, ctx["fsync"])
        _write_shard(d / f"{name}.idx", idx.tobytes(), ctx["fsync"])
        marker["shards"][split] = {
            "file": f"{split}/{name}.bin", "index": f"{split}/{name}.idx",
            "tokens": int(b - a), "documents": int(len(idx)),
            # CRC-32 (about 3x faster than SHA-256) finds a torn or zeroed shard; nothing
            # here needs a cryptographic digest of our own output (sources keep SHA-256)
            "crc32": f"{zlib.crc32(data):08x}",
        }
    # a lost marker only means the unit is redone, so its directory entry needs no fsync
    atomic_write_json(out / WORK_DIR / f"unit-{unit.index:05d}.json", marker, fsync=False)
    return marker


def _write_shard(path: Path, data: bytes | memoryview, durable: bool) -> None:
    """Write a shard atomically; with ``durable``, start (not wait for) its writeback.

    Starting writeback as each shard is written lets the disk work while the workers go
    on tokenizing, so the single fsync before ``metadata.json`` finds little left to do.
    """
    atomic_write_bytes(path, data, fsync=False)
    if durable:
        _start_writeback(path)


_SYNC_FILE_RANGE: Any = None


def _start_writeback(path: Path) -> None:
    """Ask the kernel to begin writing ``path`` to disk without waiting (Linux only).

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` gives no durability on its own (the final
    fdatasync does); elsewhere this is a no-op and the final fsync does all the work.
    """
    global _SYNC_FILE_RANGE
    if _SYNC_FILE_RANGE is None:
        _SYNC_FILE_RANGE = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _SYNC_FILE_RANGE = fn
            except (OSError, AttributeError):
                pass
    if not _SYNC_FILE_RANGE:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        _SYNC_FILE_RANGE(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE; errors are harmless here
    finally:
        os.close(fd)


class Pool:
    """Worker processes for one prepare (char-set pass and tokenizing), or none for 1 worker."""

    def __init__(self, nproc: int, sources: list[Source]):
        self.ex = None
        if nproc > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # fork: a spawned worker would re-run the caller's __main__ (scripts without a main
            # guard would break); workers touch neither torch nor the parent's tokenizer threads.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self.ex = ProcessPoolExecutor(
                nproc, mp_context=mp.get_context(method), initializer=_worker_init,
                initargs=({"sources": [s.__dict__ for s in sources], "threads": 1,
                           "parent": os.getpid()},))
        self.nproc = nproc

    def close(self, cancel: bool = False) -> None:
        """Stop the workers; with ``cancel``, drop the units not started yet.

        Always waits (``shutdown(wait=True)``): units already running finish and commit
        (at most one per worker, ~``--shard-size-mb`` of text, which a resume then keeps),
        and the executor's management thread is joined here. Returning with that thread
        still running (``wait=False``) raced CPython 3.11's exit hook, which wakes the
        thread through a pipe the thread may be closing at that moment: "Exception ignored
        ... OSError: [Errno 9] Bad file descriptor" on an early exit such as bad input.
        Waiting also means nothing is written into the output after this returns, so a
        caller's cleanup of a failed prepare cannot be undone by a late worker.
        """
        if self.ex is not None:
            ex, self.ex = self.ex, None
            ex.shutdown(wait=True, cancel_futures=cancel)

    def scan(self, sources: list[Source], shard_bytes: int, want_chars: bool, prog: Progress,
             emit: ProgressFn) -> tuple[set[str], set[int]]:
        """Scan every source (in the workers when there are some), in place.

        Returns the characters found and the indices of sources whose characters are all
        in that set (the rest need the per-piece pass of :meth:`chars`).
        """
        from stoker.data.tokenizers import CharSetBuilder

        builder = CharSetBuilder()
        covered: set[int] = set()
        items = [(i, dict(s.__dict__)) for i, s in enumerate(sources)]
        if self.ex is None or len(sources) < 2:
            batches = [items[i:i + 64] for i in range(0, len(items), 64)]
            results = (_scan_some(b, shard_bytes, want_chars) for b in batches)
        else:
            k = min(len(items), self.nproc * 8)
            batches = [items[i::k] for i in range(k)]
            results = self.ex.map(_scan_some, batches, [shard_bytes] * k, [want_chars] * k)
        for res, state in results:
            for i, sha, cuts, size, rows, ok in res:
                src = sources[i]
                prog.done_bytes += src.size
                src.sha256, src.cuts, src.size, src.rows = sha, cuts, size, rows
                if ok:
                    covered.add(i)
            if state is not None:
                builder.merge(state)
            emit(prog)
        return (builder.chars() if want_chars else set()), covered

    def chars(self, sources, units, skip_bad_lines) -> set[str]:
        if self.ex is None or len(units) < 2:
            return _corpus_chars(sources, units, skip_bad_lines)
        k = self.nproc * 4
        groups = [[u.to_json() for u in units[i::k]] for i in range(k)]
        out: set[str] = set()
        for part in self.ex.map(_worker_chars, groups, [skip_bad_lines] * k):
            out.update(part)
        return out

    def run(self, ctx, pending, on_done) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        assert self.ex is not None
        todo = list(pending)
        inflight: dict[Any, Unit] = {}
        try:
            while todo or inflight:
                while todo and len(inflight) < 2 * self.nproc:
                    u = todo.pop(0)
                    inflight[self.ex.submit(_worker_run, u.to_json(), ctx)] = u
                finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=lambda f: inflight[f].index):
                    u = inflight.pop(f)
                    on_done(u, f.result())
        except BaseException:
            # stop the workers before the caller cleans up a failed prepare: a unit still
            # running could otherwise write shards into a directory just removed
            self.close(cancel=True)
            raise


def _corpus_chars(sources: list[Source], units: list[Unit], skip_bad_lines: bool) -> set[str]:
    from stoker.data.tokenizers import char_set

    stats = ReadStats()

    def texts():
        for u in units:
            for p in u.pieces:
                yield from read_piece(sources[p.source], p, skip_bad_lines=skip_bad_lines,
                                      stats=stats, raw_ascii=True)

    return char_set(texts())
