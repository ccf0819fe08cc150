"""Train a tokenizer from the same inputs ``prepare`` reads, and save it atomically.

Why a separate step: a subword dataset needs a tokenizer first (Craft's flow), and the
tokenizer directory must never be left half-written (it is saved to a temp directory and
renamed into place: :func:`stoker.atomic.staged_dir`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from stoker.atomic import check_dir_path, staged_dir
from stoker.data.sources import InputSpec, ReadStats, expand_inputs, plan_units, read_piece, scan_source
from stoker.data.tokenizers import Tokenizer, train_tokenizer
from stoker.errors import DataError, write_failure

TYPES = ("bpe", "unigram", "char")


def iter_documents(inputs: Sequence[str], *, text_field: str = "text", skip_bad_lines: bool = False,
                   log: Callable[[str], None] | None = None):
    """All documents of ``inputs`` in deterministic order (and the number of sources)."""
    sources = expand_inputs([InputSpec(str(p), text_field=text_field) for p in inputs])
    for s in sources:
        scan_source(s, 1 << 24)
    if all(s.size == 0 for s in sources):
        raise DataError("the input is empty: " + ", ".join(s.path for s in sources[:5]))
    units = plan_units(sources, 1 << 24)
    total = sum(u.nbytes for u in units)

    def gen():
        stats = ReadStats()
        for u in units:
            for p in u.pieces:
                yield from read_piece(sources[p.source], p, skip_bad_lines=skip_bad_lines, stats=stats)
            if log:
                log(f"train-tokenizer: read {stats.bytes / 1e6:.1f}/{total / 1e6:.1f} MB")

    return gen(), len(sources)


def train_tokenizer_to_dir(
    inputs: Sequence[str], output_dir: str | Path, *, type: str = "bpe", vocab_size: int = 8192,
    library: str = "hf", text_field: str = "text", skip_bad_lines: bool = False,
    overwrite: bool = False, progress: bool = False, log: Callable[[str], None] | None = None,
) -> Tokenizer:
    if type not in TYPES:
        raise DataError(f"unknown --type {type!r}; use one of: {', '.join(TYPES)}")
    if library not in ("hf", "sentencepiece"):
        raise DataError(f"unknown --library {library!r}; use hf or sentencepiece")
    if type != "char" and vocab_size < 16:
        raise DataError(f"--vocab-size {vocab_size} is too small (use at least 16)")
    out = Path(output_dir).expanduser().resolve()
    check_dir_path(out, "--output-dir")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"--output-dir {out} already exists and is not empty; pass --overwrite "
                        "to replace it or choose another directory")
    docs, _n = iter_documents(inputs, text_field=text_field, skip_bad_lines=skip_bad_lines, log=log)
    seen = [0]

    def counted():
        for d in docs:
            seen[0] += 1
            yield d

    tok = train_tokenizer(counted(), type=type, vocab_size=vocab_size, library=library,
                          progress=progress)
    if seen[0] == 0 or tok.vocab_size <= 2:
        raise DataError("the input holds no text to train a tokenizer on")
    try:
        with staged_dir(out) as tmp:
            tok.save(tmp)
    except OSError as exc:  # a full disk: no temp folder left, a message instead of a traceback
        raise write_failure(exc, f"the tokenizer {out}") from exc
    return tok
