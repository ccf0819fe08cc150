"""The built-in corpus: the ``.py`` sources of the running Python's standard library.

Why: every Python install ships it, so the demo and the default recipes need no download.
The file list is gathered deterministically (sorted relative paths; test suites and
site-packages left out, about 12 MB on CPython 3.11) and its checksum is recorded in the
prepared dataset's metadata.

:func:`ensure_default_dataset` prepares it once and caches it under
``$STOKER_HOME/data/``, keyed by everything that determines the bytes (Python version, the
file list with sizes and mtimes, the kind and settings). It is safe to call from several
processes at once (a file lock; the loser waits and reuses the winner's result) and after
a crash (``prepare`` resumes its own unfinished output).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

EXCLUDED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
KINDS = ("char", "bpe")
_FORMAT_KEY = "stdlib-corpus/1"


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def default_corpus_files() -> list[Path]:
    """Every ``.py`` file of the standard library, in sorted relative-path order."""
    root = stdlib_dir()
    out: list[tuple[str, Path]] = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith(".")]
        for n in names:
            if n.endswith(".py"):
                p = Path(dirpath) / n
                out.append((p.relative_to(root).as_posix(), p))
    out.sort()
    return [p for _, p in out]


def corpus_checksum(files: list[Path] | None = None) -> str:
    """SHA-256 over (relative path, content SHA-256) of every corpus file, in order."""
    root = stdlib_dir()
    h = hashlib.sha256()
    for p in files if files is not None else default_corpus_files():
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def stoker_home() -> Path:
    return Path(os.environ.get("STOKER_HOME") or Path.home() / ".stoker").expanduser()


def _cache_key(kind: str, files: list[Path], settings: dict[str, Any]) -> str:
    root = stdlib_dir()
    h = hashlib.sha256()
    h.update(json.dumps([_FORMAT_KEY, kind, sys.version, str(root), settings], sort_keys=True).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def ensure_default_dataset(
    kind: str = "char",
    root: str | Path | None = None,
    *,
    vocab_size: int = 8192,
    workers: int | None = None,
    progress: Any = None,
) -> Path:
    """Prepare the built-in corpus once (``char`` or ``bpe``) and return its directory.

    Cached under ``root`` (default ``$STOKER_HOME/data``); a second call returns at once.
    """
    import fcntl

    from stoker.errors import DataError

    if kind not in KINDS:
        raise DataError(f"unknown default dataset kind {kind!r}; use one of: {', '.join(KINDS)}")
    base = Path(root).expanduser() if root is not None else stoker_home() / "data"
    files = default_corpus_files()
    if not files:
        raise DataError(f"no .py files found under the standard library at {stdlib_dir()}")
    settings: dict[str, Any] = {"split_ratios": [0.9, 0.05, 0.05], "shard_size_mb": 4.0}
    if kind == "bpe":
        settings["vocab_size"] = vocab_size
    key = _cache_key(kind, files, settings)
    out = base / f"stdlib-{kind}-{key}"
    if (out / "metadata.json").is_file():
        return out
    base.mkdir(parents=True, exist_ok=True)
    with open(base / f".stdlib-{kind}-{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (out / "metadata.json").is_file():  # another process finished while we waited
                return out
            return _build(kind, files, out, settings, vocab_size, workers, progress)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(kind, files, out, settings, vocab_size, workers, progress) -> Path:
    from stoker.atomic import staged_dir
    from stoker.data._io import atomic_write_json, read_json
    from stoker.data.prepare import prepare
    from stoker.data.tokenizers import load_tokenizer, train_tokenizer

    tokenizer = None
    if kind == "bpe":
        tdir = out.with_name(out.name + "-tokenizer")
        if not (tdir / "tokenizer.json").is_file():
            tok = train_tokenizer((p.read_text("utf-8") for p in files), type="bpe",
                                  vocab_size=vocab_size, length=len(files))
            with staged_dir(tdir) as tmp:
                tok.save(tmp)
        tokenizer = load_tokenizer(tdir)
    prepare([str(p) for p in files], out, type="char" if kind == "char" else "subword",
            tokenizer=tokenizer, split_ratios=settings["split_ratios"],
            shard_size_mb=settings["shard_size_mb"], workers=workers, progress=progress,
            command=f"stoker.data.corpus.ensure_default_dataset({kind!r})")
    md = read_json(out / "metadata.json")
    if "corpus" not in md:
        md["corpus"] = {
            "name": "python-stdlib", "python": sys.version.split()[0], "root": str(stdlib_dir()),
            "files": len(files), "bytes": sum(s["size"] for s in md["sources"]),
            "sha256": corpus_checksum(files),
        }
        atomic_write_json(out / "metadata.json", md)
    return out
