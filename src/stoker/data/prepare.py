"""Raw text/JSONL/Parquet/HF-datasets -> memory-mapped token shards (``stoker data prepare``).

How it stays fast, safe and deterministic:

1. Everything the user can get wrong (paths, ratios, tokenizer, output directory, dtype) is
   checked before the output directory is touched.
2. One streaming pass reads every input for its SHA-256 and cuts large files at newlines
   into units of about ``shard_size_mb`` (the cut points depend only on the inputs).
3. Each unit is tokenized (in ``workers`` processes) and committed on its own: shard files
   are written atomically, then a per-unit marker. A re-run with the same inputs and
   settings skips committed units; a unit's bytes never depend on the worker count.
4. ``metadata.json`` is written last; its presence is what "finished" means.

A malformed input found mid-way (a bad JSONL line) removes the partial output, so a user
error never leaves a half-written dataset; a crash or Ctrl-C keeps it for resuming.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoker.atomic import check_dir_path, fsync_dir
from stoker.data._io import atomic_write_json, read_json
from stoker.data.prepare_workers import Pool, process_unit
from stoker.data.shards import FORMAT, SPLITS, WORK_DIR, pick_dtype
from stoker.data.sources import InputSpec, Source, Unit, expand_inputs, plan_units
from stoker.errors import DataError, Interrupted, write_failure

TYPES = ("char", "subword")


@dataclass
class Progress:
    """What a progress display needs; passed to the ``progress`` callback after each step."""

    phase: str  # scan | tokenize | done
    total_bytes: int = 0
    done_bytes: int = 0
    total_units: int = 0
    done_units: int = 0
    resumed_units: int = 0
    already_prepared: bool = False  # the output already held this exact dataset: nothing done
    documents: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)


ProgressFn = Callable[[Progress], None]


# ------------------------------------------------------------------------------ validation


def parse_split_ratios(value: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.9,0.05,0.05"`` -> (0.9, 0.05, 0.05): 1-3 non-negative numbers summing to 1."""
    if isinstance(value, str):
        try:
            ratios = tuple(float(x) for x in value.replace(" ", "").split(",") if x != "")
        except ValueError as e:
            raise DataError(f"--split-ratios {value!r}: not a comma-separated list of numbers "
                            "(example: 0.9,0.05,0.05)") from e
    else:
        ratios = tuple(float(x) for x in value)
    if not 1 <= len(ratios) <= 3:
        raise DataError(f"--split-ratios {value!r}: give 1 to 3 ratios (train,valid,test), "
                        "for example 0.9,0.05,0.05")
    if not all(math.isfinite(r) for r in ratios):
        raise DataError(f"--split-ratios {value!r}: every ratio must be a finite number "
                        "(not nan or inf), for example 0.9,0.05,0.05")
    if any(r < 0 for r in ratios):
        raise DataError(f"--split-ratios {value!r}: ratios must not be negative")
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise DataError(f"--split-ratios {value!r}: ratios sum to {sum(ratios):g}, they must sum "
                        "to 1 (for example 0.9,0.05,0.05)")
    if ratios[0] <= 0:
        raise DataError(f"--split-ratios {value!r}: the train ratio must be above 0")
    return ratios


def _as_specs(inputs: Any, text_field: str) -> list[InputSpec]:
    if isinstance(inputs, (str, os.PathLike, InputSpec)):
        inputs = [inputs]
    out = []
    for x in inputs:
        out.append(x if isinstance(x, InputSpec) else InputSpec(str(x), text_field=text_field))
    return out


def _expand_weighted(specs: list[InputSpec], out: Path) -> list[Source]:
    """Expand inputs (never listing ``out``); blend-file shares become per-source repeat
    factors (by input bytes)."""
    if not any(s.share for s in specs):
        return expand_inputs(specs, exclude=out)
    groups = [expand_inputs([s], exclude=out) for s in specs]
    total_bytes = sum(src.size for g in groups for src in g)
    total_w = sum(s.weight for s in specs)
    out: list[Source] = []
    for spec, g in zip(specs, groups):
        nbytes = sum(src.size for src in g)
        if nbytes == 0 and spec.weight > 0:
            raise DataError(f"blend source {spec.path} is empty but has weight {spec.weight}")
        factor = (spec.weight / total_w) * total_bytes / nbytes if nbytes else 0.0
        for src in g:
            src.weight = round(factor, 6)
        out.extend(g)
    return out


# --------------------------------------------------------------------------- output state


def _output_state(out: Path) -> str:
    """'absent' | 'empty' | 'finished' | 'unfinished' | 'foreign'."""
    if not out.exists():
        return "absent"
    if not out.is_dir():
        return "foreign"
    if (out / "metadata.json").is_file():
        return "finished"
    if (out / WORK_DIR / "plan.json").is_file():
        return "unfinished"
    if not any(out.iterdir()) or all(p.name == WORK_DIR for p in out.iterdir()):
        return "empty"
    return "foreign"


def _sweep_temp_files(out: Path) -> None:
    """Remove the temp files a killed prepare left mid-write (``.shard-*.bin.XXXX.tmp`` from
    the atomic writer): they belong to no committed unit, and a resumed dataset must be the
    same files as a clean one. (One prepare per output directory: a second, concurrent one
    would lose its temp files here, as it would lose much else.)"""
    for split in SPLITS:
        d = out / split
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                p.unlink(missing_ok=True)


def _clear_dataset(out: Path) -> None:
    """Remove what a prepare wrote in ``out`` (only stoker's own entries)."""
    for name in ("metadata.json", "tokenizer", *SPLITS, WORK_DIR, ".stoker-artifact.json"):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _marker_valid(out: Path, marker_path: Path) -> dict[str, Any] | None:
    try:
        m = read_json(marker_path)
    except (OSError, ValueError):
        return None
    import numpy as np

    from stoker.data._io import crc32_file

    for s in m.get("shards", {}).values():
        f = out / s["file"]
        if "crc32" not in s:  # a marker from an older stoker (SHA-256 per shard): redo the unit
            return None
        try:
            if f.stat().st_size != s["tokens"] * np.dtype(_dtype_of(out)).itemsize:
                return None
            if crc32_file(f) != s["crc32"]:
                return None
        except OSError:
            return None
        if not (out / s["index"]).is_file():
            return None
    return m


def _dtype_of(out: Path) -> str:
    return read_json(out / WORK_DIR / "plan.json")["dtype"]


# ---------------------------------------------------------------------------------- main


def prepare(
    inputs: Any,
    output_dir: str | Path,
    *,
    type: str = "char",
    tokenizer_path: str | Path | None = None,
    tokenizer: Any = None,
    split_ratios: str | Sequence[float] = (0.9, 0.05, 0.05),
    workers: int | None = None,
    text_field: str = "text",
    skip_bad_lines: bool = False,
    dtype: str = "auto",
    overwrite: bool = False,
    shard_size_mb: float = 4.0,
    append_eos: bool = True,
    command: Sequence[str] | str | None = None,
    progress: ProgressFn | None = None,
    fsync: bool = True,
) -> Path:
    """Prepare ``inputs`` into token shards under ``output_dir`` and return its path.

    ``inputs``: a path/glob/directory, an :class:`InputSpec`, or a list of them (a blend file
    is turned into InputSpecs with weights by :func:`stoker.data.blend.read_blend_file`).
    Re-running with the same inputs and settings resumes an unfinished output and returns
    a finished one untouched.
    """
    from stoker.data.tokenizers import load_tokenizer

    t0 = time.monotonic()
    if type not in TYPES:
        raise DataError(f"unknown --type {type!r}; use one of: {', '.join(TYPES)}")
    ratios = parse_split_ratios(split_ratios)
    if shard_size_mb <= 0:
        raise DataError(f"--shard-size-mb must be above 0, got {shard_size_mb}")
    shard_bytes = max(1, int(shard_size_mb * (1 << 20)))
    if workers is not None and workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    nworkers = workers or os.cpu_count() or 1

    if tokenizer is None and tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
    if type == "subword" and tokenizer is None:
        raise DataError("--type subword needs --tokenizer-path (a tokenizer.json, a SentencePiece "
                        ".model, or a directory from `stoker data train-tokenizer`)")
    if tokenizer is not None:
        pick_dtype(tokenizer.vocab_size, dtype)  # fail early on a too-small dtype

    specs = _as_specs(inputs, text_field)
    out = Path(output_dir).expanduser().resolve()
    check_dir_path(out, "--output-dir")
    # An output directory inside an input directory is left out of the listing (its shards
    # and metadata.json are not input), so `-i corpus/ -o corpus/prepared` works and a
    # re-run finds its finished dataset. A file named directly inside it is refused below.
    sources = _expand_weighted(specs, out)
    out_prefix = str(out).rstrip(os.sep) + os.sep
    for s in sources:  # source paths are absolute and normalised (os.path.abspath)
        if s.path == str(out) or s.path.startswith(out_prefix):
            raise DataError(f"input {s.path} lies inside the output directory {out}; "
                            "choose another --output-dir")

    state = _output_state(out)
    if state == "foreign":
        raise DataError(f"--output-dir {out} exists and is not a stoker dataset (it is a file or "
                        "holds other files); choose a new or empty directory")

    prog = Progress("scan", total_bytes=sum(s.size for s in sources))
    emit = progress or (lambda p: None)
    emit(prog)
    # The workers read sources by path/format/field only, so they can start before the scan
    # (which they share). Units hold at most ~shard_bytes, so there are at least this many:
    est_units = max(1, -(-prog.total_bytes // shard_bytes)) + (len(sources) > 1)
    pool = Pool(min(nworkers, est_units), sources)
    try:
        # a char vocabulary is collected from text files in the same read as their SHA-256
        scan_chars, covered = pool.scan(sources, shard_bytes, tokenizer is None, prog, emit)
        if all(s.size == 0 for s in sources):
            raise DataError("the input is empty: " + ", ".join(s.path for s in sources[:5]))
        units = plan_units(sources, shard_bytes)
        splits = list(SPLITS[: len(ratios)])
        return _prepare_planned(**locals())
    finally:
        pool.close(cancel=True)


def _prepare_planned(*, pool, units, splits, tokenizer, sources, skip_bad_lines, dtype, type, ratios,
                     shard_size_mb, append_eos, state, out, overwrite, prog, emit, fsync, command,
                     t0, scan_chars, covered, **_unused) -> Path:
    from stoker.data.tokenizers import CharTokenizer

    if tokenizer is None:  # char vocabulary built from the corpus
        # sources the scan could not cover (JSONL, Parquet, partial blend weights, bad UTF-8)
        rest = [Unit(u.index, kept, u.nbytes) for u in units
                if (kept := [p for p in u.pieces if p.source not in covered])]
        scan_chars.update(pool.chars(sources, rest, skip_bad_lines))
        tokenizer = CharTokenizer(scan_chars)
        if tokenizer.vocab_size <= len(CharTokenizer.SPECIALS):
            raise DataError("the input holds no text: " + ", ".join(s.path for s in sources[:5]))
    out_dtype = pick_dtype(tokenizer.vocab_size, dtype)

    settings = {
        "type": type, "split_ratios": list(ratios), "splits": splits,
        "shard_size_mb": shard_size_mb, "dtype": out_dtype, "append_eos": append_eos,
        "skip_bad_lines": skip_bad_lines,
    }
    fingerprint = _fingerprint(sources, settings, tokenizer)

    if state == "finished":
        try:
            old = read_json(out / "metadata.json").get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old == fingerprint and not overwrite:
            prog.phase = "done"
            prog.already_prepared = True
            emit(prog)
            return out
        if not overwrite:
            raise DataError(f"--output-dir {out} already holds a different prepared dataset; "
                            "pass --overwrite to replace it or choose another directory")
        _clear_dataset(out)
        state = "empty"
    elif state == "unfinished":
        old = read_json(out / WORK_DIR / "plan.json").get("fingerprint")
        if old != fingerprint:
            if not overwrite:
                raise DataError(f"--output-dir {out} holds an unfinished prepare of different inputs "
                                "or settings; pass --overwrite to start over or choose another directory")
            _clear_dataset(out)
            state = "empty"

    created = state == "absent"
    done: dict[int, dict[str, Any]] = {}
    try:
        return _write_dataset(**locals())
    except OSError as exc:  # a full disk: keep committed shards for a resume, else nothing
        if not done:
            shutil.rmtree(out, ignore_errors=True) if created else _clear_dataset(out)
        kept = (f"the {len(done)} shard(s) committed so far are kept: run the same command "
                "again to resume once there is room" if done else "nothing was kept")
        raise write_failure(exc, f"the dataset {out}",
                            f"Free space on that disk or choose another --output-dir; {kept}.") from exc


def _write_dataset(*, pool, units, splits, tokenizer, sources, skip_bad_lines, type, ratios,
                   append_eos, state, out, prog, emit, fsync, command, t0, out_dtype, settings,
                   fingerprint, created, done, **_unused) -> Path:
    """Write the shards (resuming committed ones), then metadata.json last."""
    from stoker import __version__

    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    if state != "unfinished":
        tokenizer.save(out / "tokenizer")
        atomic_write_json(work / "plan.json", {
            "fingerprint": fingerprint, "dtype": out_dtype, "units": len(units),
        }, fsync=fsync)

    if state == "unfinished":
        _sweep_temp_files(out)

    # which units are already committed?
    for u in units:
        mp = work / f"unit-{u.index:05d}.json"
        if mp.is_file():
            m = _marker_valid(out, mp)
            if m is not None:
                done[u.index] = m
    pending = [u for u in units if u.index not in done]
    prog.phase = "tokenize"
    prog.total_units = len(units)
    prog.total_bytes = sum(u.nbytes for u in units)
    prog.done_units = prog.resumed_units = len(done)
    prog.done_bytes = sum(u.nbytes for u in units if u.index in done)
    prog.documents = sum(m["documents"] for m in done.values())
    prog.tokens = sum(m["tokens"] for m in done.values())
    prog.started = time.monotonic()
    emit(prog)

    ctx = {
        "out": str(out), "dtype": out_dtype, "append_eos": append_eos, "ratios": list(ratios),
        "splits": splits, "skip_bad_lines": skip_bad_lines, "vocab_size": tokenizer.vocab_size,
        "fsync": fsync,
    }

    def on_done(u: Unit, m: dict[str, Any]) -> None:
        done[u.index] = m
        prog.done_units += 1
        prog.done_bytes += u.nbytes
        prog.documents += m["documents"]
        prog.tokens += m["tokens"]
        emit(prog)

    try:
        if pool.ex is None or len(pending) <= 1:
            local = dict(ctx, tokenizer=tokenizer, sources=sources)
            for u in pending:
                on_done(u, process_unit(u, local))
        else:
            pool.run(ctx, pending, on_done)
    except DataError:
        # a user error in the input: leave nothing half-written
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            _clear_dataset(out)
        raise
    except KeyboardInterrupt as e:
        raise Interrupted(f"interrupted; {len(done)}/{len(units)} shards of {out} are committed. "
                          "Run the same command again to finish.") from e

    metadata = _metadata(out, sources, units, done, settings, tokenizer, fingerprint, command,
                         __version__, time.monotonic() - t0)
    if metadata["splits"]["train"]["tokens"] == 0:
        _clear_dataset(out) if not created else shutil.rmtree(out, ignore_errors=True)
        raise DataError("the input produced no tokens (every document was empty or skipped)")
    if fsync:  # make every shard durable before metadata.json declares the dataset finished
        _fsync_tree(out)
    atomic_write_json(out / "metadata.json", metadata, fsync=fsync)
    shutil.rmtree(work, ignore_errors=True)
    fsync_dir(out)
    prog.phase = "done"
    emit(prog)
    return out


def _fsync_tree(out: Path) -> None:
    for d in [out / "tokenizer", *(out / s for s in SPLITS)]:
        if not d.is_dir():
            continue
        for f in d.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        fsync_dir(d)
    fsync_dir(out)


def _fingerprint(sources: list[Source], settings: dict[str, Any], tokenizer: Any) -> str:
    h = hashlib.sha256()
    h.update(FORMAT.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    enc = json.JSONEncoder(sort_keys=True).encode  # = json.dumps(x, sort_keys=True), built once
    for s in sources:
        h.update(enc([s.format, s.size, s.sha256, s.text_field if s.format != "text" else None,
                      s.weight]).encode())
    h.update(json.dumps(tokenizer.describe(), sort_keys=True).encode())
    if getattr(tokenizer, "chars", None) is not None:
        h.update("".join(tokenizer.chars).encode("utf-8", "surrogatepass"))
    for attr in ("tok", "model_bytes"):
        obj = getattr(tokenizer, attr, None)
        if obj is not None:
            h.update(obj.to_str().encode() if attr == "tok" else obj)
    return h.hexdigest()


def _metadata(out, sources, units, done, settings, tokenizer, fingerprint, command, version,
              seconds) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in settings["splits"]:
        shards = [done[u.index]["shards"][split] for u in units if split in done[u.index]["shards"]]
        splits[split] = {
            "tokens": sum(s["tokens"] for s in shards),
            "documents": sum(s["documents"] for s in shards),
            "shards": shards,
        }
    if isinstance(command, (list, tuple)):
        command = " ".join(_quote(c) for c in command)
    return {
        "format": FORMAT,
        "stoker_version": version,
        "command": command or "stoker.data.prepare.prepare(...)",
        "fingerprint": fingerprint,
        "dtype": settings["dtype"],
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "tokenizer": {**tokenizer.describe(), "path": "tokenizer"},
        "settings": settings,
        "total_tokens": sum(s["tokens"] for s in splits.values()),
        "documents": sum(done[u.index]["documents"] for u in units),
        "bad_lines_skipped": sum(done[u.index]["bad_lines"] for u in units),
        "input_bytes": sum(u.nbytes for u in units),
        "splits": splits,
        "sources": [s.describe() for s in sources],
    }


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(str(s))
