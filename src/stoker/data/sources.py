"""Finding input files and cutting them into deterministic work units.

Why units: ``prepare`` tokenizes and commits one unit at a time, so a crash redoes only
unfinished units, and any number of workers produces byte-identical shards (a unit's
content depends only on the inputs and ``shard_bytes``, never on who processes it).

Formats: plain text (one file = one document), JSONL (one line = one document, field
``text_field``), Parquet (one row = one document), and a local Hugging Face ``datasets``
directory written by ``save_to_disk`` (its Arrow files are read with pyarrow, no download).
Large text/JSONL files are cut at newlines into pieces of about ``shard_bytes``.
"""
from __future__ import annotations

import glob as _glob
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stoker.errors import DataError

_SCAN_BLOCK = 1 << 22

TEXT_SUFFIXES_SKIP = {".pyc", ".pyo", ".so", ".o", ".a", ".dll", ".exe", ".bin", ".idx",
                      ".png", ".jpg", ".jpeg", ".gif", ".zip", ".gz", ".bz2", ".xz", ".whl",
                      ".npy", ".npz", ".pt", ".pkl", ".safetensors"}


@dataclass
class Source:
    """One input file, fully described in metadata.json (path, size, SHA-256)."""

    path: str
    format: str  # text | jsonl | parquet | arrow
    size: int
    sha256: str = ""
    text_field: str | None = None
    weight: float = 1.0
    name: str = ""
    rows: int | None = None  # parquet/arrow
    cuts: list[list[int]] = field(default_factory=list)  # text/jsonl: [start, end, first_line]

    def describe(self) -> dict[str, Any]:
        d = {"path": self.path, "format": self.format, "size": self.size, "sha256": self.sha256}
        if self.text_field and self.format != "text":
            d["text_field"] = self.text_field
        if self.weight != 1.0:
            d["weight"] = self.weight
        if self.name:
            d["name"] = self.name
        if self.rows is not None:
            d["rows"] = self.rows
        return d


@dataclass(frozen=True)
class Piece:
    """A slice of one source: byte range (text/jsonl) or row range (parquet/arrow)."""

    source: int
    start: int
    end: int
    first_line: int = 1
    starts_doc: bool = True
    ends_doc: bool = True
    repeat: int = 0
    keep: float = 1.0  # fraction of documents kept (blend weights below 1)


@dataclass
class Unit:
    index: int
    pieces: list[Piece]
    nbytes: int

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "nbytes": self.nbytes, "pieces": [asdict(p) for p in self.pieces]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Unit:
        return cls(d["index"], [Piece(**p) for p in d["pieces"]], d["nbytes"])


@dataclass
class InputSpec:
    """One entry the user gave: a path, glob or directory, with its options."""

    path: str
    text_field: str = "text"
    weight: float = 1.0
    name: str = ""
    share: bool = False  # weight is a share of the output (blend files), not a repeat factor


# ------------------------------------------------------------------------------ discovery


def _is_hf_dataset_dir(p: Path) -> bool:
    return (p / "state.json").is_file() or (p / "dataset_dict.json").is_file()


def _format_of(p: Path) -> str:
    s = p.suffix.lower()
    if s in (".jsonl", ".ndjson") or p.name.endswith(".jsonl.txt"):
        return "jsonl"
    if s == ".parquet":
        return "parquet"
    return "text"


def _hf_arrow_files(d: Path) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` directory (Dataset or DatasetDict), in order."""
    if (d / "dataset_dict.json").is_file():
        try:
            splits = json.loads((d / "dataset_dict.json").read_text())["splits"]
        except (ValueError, KeyError) as e:
            raise DataError(f"{d / 'dataset_dict.json'}: not a datasets DatasetDict file ({e})") from e
        out: list[Path] = []
        for s in splits:
            out.extend(_hf_arrow_files(d / s))
        return out
    try:
        state = json.loads((d / "state.json").read_text())
        files = [d / f["filename"] for f in state["_data_files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{d / 'state.json'}: not a datasets save_to_disk directory ({e})") from e
    for f in files:
        if not f.is_file():
            raise DataError(f"{d}: data file {f.name} listed in state.json is missing")
    return files


def expand_inputs(specs: Sequence[InputSpec], *, exclude: str | Path | None = None) -> list[Source]:
    """Turn paths, globs and directories into an ordered list of sources.

    Order is deterministic: inputs in the order given, files of a directory or glob sorted
    by path. Hidden files and obvious binaries inside directories are skipped, and so is
    everything under ``exclude`` (the output directory of a prepare that lies inside an
    input directory: its own shards and metadata are never input).
    """
    skip = os.path.abspath(exclude) if exclude is not None else None
    out: list[Source] = []
    if not specs:
        raise DataError("no input given; pass --input-path PATH (a file, glob or directory)")
    for spec in specs:
        raw = os.path.expanduser(spec.path)
        paths: list[Path]
        if any(ch in raw for ch in "*?["):
            paths = [Path(p) for p in sorted(_glob.glob(raw, recursive=True))]
            paths = [p for p in paths if p.is_file() or (p.is_dir() and _is_hf_dataset_dir(p))]
            paths = [p for p in paths if not _under(p, skip)]
            if not paths:
                raise DataError(f"--input-path {spec.path!r}: the glob matches no file")
        else:
            p = Path(raw)
            if not p.exists():
                raise DataError(f"--input-path {spec.path}: no such file or directory")
            paths = [p]
        for p in paths:
            out.extend(_expand_one(p, spec, skip))
    if not out:
        raise DataError("the inputs hold no files to read: " + ", ".join(s.path for s in specs))
    return out


def _under(p: str | Path, root: str | None) -> bool:
    if root is None:
        return False
    a = os.path.abspath(p)
    return a == root or a.startswith(root.rstrip(os.sep) + os.sep)


def _expand_one(p: Path, spec: InputSpec, skip: str | None = None) -> list[Source]:
    if p.is_dir() and not _under(p, skip):
        if _is_hf_dataset_dir(p):
            return [_source(f, "arrow", spec) for f in _hf_arrow_files(p)]
        # plain strings, not Path objects: a corpus can hold hundreds of thousands of files
        files: list[str] = []
        for root, dirs, names in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__"
                             and not _under(os.path.join(root, d), skip))
            for n in sorted(names):
                if n.startswith(".") or os.path.splitext(n)[1].lower() in TEXT_SUFFIXES_SKIP:
                    continue
                files.append(os.path.join(root, n))
        files.sort()
        if not files:
            raise DataError(f"--input-path {p}: the directory holds no readable files")
        return [_source(f, _format_of_name(f), spec) for f in files]
    return [_source(p, _format_of(p), spec)]


def _format_of_name(name: str) -> str:
    s = os.path.splitext(name)[1].lower()
    if s in (".jsonl", ".ndjson") or name.endswith(".jsonl.txt"):
        return "jsonl"
    if s == ".parquet":
        return "parquet"
    return "text"


def _source(p: Path | str, fmt: str, spec: InputSpec) -> Source:
    try:
        size = os.stat(p).st_size
    except OSError as e:
        raise DataError(f"cannot read input {p}: {e.strerror}") from e
    return Source(path=os.path.abspath(p), format=fmt, size=size, text_field=spec.text_field,
                  weight=spec.weight, name=spec.name)


# ------------------------------------------------------------------------------- planning


def scan_source(src: Source, shard_bytes: int, *, count_lines: bool | None = None,
                chars: Any = None) -> bool:
    """Read a source once: SHA-256, and (text/jsonl) newline cut points every ``shard_bytes``.

    Fills ``src.sha256`` and ``src.cuts`` / ``src.rows``. Line numbers (for file:line in
    errors) are only counted in files big enough to be cut: a one-piece file starts at
    line 1, and counting every newline of a large corpus costs as much as hashing it.

    ``chars`` (a :class:`~stoker.data.tokenizers.CharSetBuilder`, text files only) also
    collects the file's characters in the same read. Returns False when the file is not
    valid UTF-8 (the tokenizing pass reports it with file:line), else True.
    """
    h = hashlib.sha256()
    if count_lines is None:
        count_lines = src.size > shard_bytes
    if src.format in ("text", "jsonl"):
        cuts: list[list[int]] = []
        start, line, pos = 0, 1, 0
        line_at_start = 1
        target = shard_bytes
        try:
            f = open(src.path, "rb")
        except OSError as e:
            raise DataError(f"cannot read input {src.path}: {e.strerror}") from e
        dec = None
        if chars is not None and src.format == "text":
            import codecs

            dec = codecs.getincrementaldecoder("utf-8")()
        chars_ok = dec is not None
        with f:
            # a file that fits in one block is read in one call sized to it: read(4 MiB)
            # would allocate and shrink a 4 MiB buffer for each of thousands of small files
            n = src.size + 1 if src.size < _SCAN_BLOCK else _SCAN_BLOCK
            while True:
                block = f.read(n)
                short = len(block) < n  # a regular file reads short only at its end
                n = _SCAN_BLOCK  # a file that grew since it was listed: go on in blocks
                if not block:
                    break
                h.update(block)
                if chars_ok:
                    try:
                        if block.isascii() and not dec.getstate()[0]:
                            chars.add(block)
                        else:
                            chars.add(dec.decode(block))
                    except UnicodeDecodeError:
                        chars_ok = False
                bpos = 0
                while True:
                    want = start + target - pos  # offset in this block where a cut may start
                    if want >= len(block):
                        break
                    j = block.find(b"\n", max(want, bpos))
                    if j < 0:
                        break
                    if not count_lines:  # the file grew since it was listed: count after all
                        return scan_source(src, shard_bytes, count_lines=True, chars=chars)
                    cut = pos + j + 1
                    line += block.count(b"\n", bpos, j + 1)
                    cuts.append([start, cut, line_at_start])
                    start, line_at_start, bpos = cut, line, j + 1
                if count_lines:
                    line += block.count(b"\n", bpos)
                pos += len(block)
                if short:
                    break
        if pos > start or not cuts:
            cuts.append([start, pos, line_at_start])
        if chars_ok:
            try:
                dec.decode(b"", final=True)
            except UnicodeDecodeError:
                chars_ok = False
        src.cuts = cuts
        src.size = pos
        src.sha256 = h.hexdigest()
        return chars_ok
    elif src.format == "parquet":
        import pyarrow.parquet as pq

        src.sha256 = _sha_file(src.path, h)
        try:
            pf = pq.ParquetFile(src.path)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError variants
            raise DataError(f"{src.path}: not a readable Parquet file ({e})") from e
        names = pf.schema_arrow.names
        if src.text_field not in names:
            raise DataError(f"{src.path}: no column {src.text_field!r} (columns: {', '.join(names)}); "
                            "pass --text-field NAME")
        src.rows = pf.metadata.num_rows
        # one cut per row group, merged up to shard_bytes by the unit planner
        cuts, acc = [], 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            sz = pf.metadata.row_group(g).total_byte_size
            cuts.append([g, g + 1, acc, sz])
            acc += n
        src.cuts = cuts
        return False
    elif src.format == "arrow":
        src.sha256 = _sha_file(src.path, h)
        table = _open_arrow(src.path)
        if src.text_field not in table.column_names:
            raise DataError(f"{src.path}: no column {src.text_field!r} (columns: "
                            f"{', '.join(table.column_names)}); pass --text-field NAME")
        src.rows = table.num_rows
        per_row = max(1, src.size // max(1, table.num_rows))
        step = max(1, shard_bytes // per_row)
        src.cuts = [[a, min(a + step, table.num_rows), a, (min(a + step, table.num_rows) - a) * per_row]
                    for a in range(0, table.num_rows, step)]
        return False
    src.sha256 = h.hexdigest()
    return False


def _sha_file(path: str, h) -> str:
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _open_arrow(path: str):
    import pyarrow as pa

    try:
        return pa.ipc.open_stream(pa.memory_map(path, "r")).read_all()
    except Exception:  # noqa: BLE001 - try the other Arrow container before giving up
        try:
            return pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
        except Exception as e:  # pyarrow raises ArrowInvalid
            raise DataError(f"{path}: not a readable Arrow file ({e})") from e


def plan_units(sources: Sequence[Source], shard_bytes: int) -> list[Unit]:
    """Group source pieces into units of about ``shard_bytes`` of input, in input order."""
    import math

    units: list[Unit] = []
    cur: list[Piece] = []
    cur_bytes = 0

    def flush():
        nonlocal cur, cur_bytes
        if cur:
            units.append(Unit(len(units), cur, cur_bytes))
            cur, cur_bytes = [], 0

    for si, src in enumerate(sources):
        reps = max(1, math.ceil(src.weight)) if src.weight > 0 else 0
        for r in range(reps):
            keep = 1.0 if r < math.floor(src.weight) else src.weight - math.floor(src.weight)
            if src.format in ("text", "jsonl"):
                last = len(src.cuts) - 1
                for k, (a, b, line) in enumerate(src.cuts):
                    if cur and cur_bytes + (b - a) > shard_bytes:
                        flush()
                    text_doc = src.format == "text"
                    cur.append(Piece(si, a, b, line, starts_doc=(k == 0) or not text_doc,
                                     ends_doc=(k == last) or not text_doc, repeat=r, keep=keep))
                    cur_bytes += b - a
            else:
                for a, b, _row0, sz in src.cuts:
                    if cur and cur_bytes + sz > shard_bytes:
                        flush()
                    cur.append(Piece(si, a, b, 1, repeat=r, keep=keep))
                    cur_bytes += sz
    flush()
    return units


# -------------------------------------------------------------------------------- reading


@dataclass
class ReadStats:
    bad_lines: int = 0
    documents: int = 0
    bytes: int = 0


def _keep_doc(piece: Piece, key: int) -> bool:
    if piece.keep >= 1.0:
        return True
    h = hashlib.blake2b(f"{piece.source}:{piece.repeat}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < piece.keep


def read_piece(src: Source, piece: Piece, *, skip_bad_lines: bool, stats: ReadStats,
               raw_ascii: bool = False) -> Iterator[str | bytes]:
    """Yield the documents (or, for a cut text file, the document part) of one piece.

    With ``raw_ascii`` a text piece that is pure ASCII comes back as its raw ``bytes``
    (one byte per character, nothing to validate): the char tokenizer maps bytes straight
    to ids, which skips a decode and a re-encode of every byte.
    """
    if src.format in ("text", "jsonl"):
        try:
            with open(src.path, "rb") as f:
                f.seek(piece.start)
                data = f.read(piece.end - piece.start)
        except OSError as e:
            raise DataError(f"cannot read input {src.path}: {e.strerror}") from e
        stats.bytes += len(data)
        if src.format == "text":
            if raw_ascii and data.isascii():
                if _keep_doc(piece, piece.start):
                    if piece.starts_doc:
                        stats.documents += 1
                    yield data
                return
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = piece.first_line + data.count(b"\n", 0, e.start)
                raise DataError(f"{src.path}:{line}: not UTF-8 text (byte offset "
                                f"{piece.start + e.start}); convert the file to UTF-8") from e
            if _keep_doc(piece, piece.start):
                if piece.starts_doc:
                    stats.documents += 1
                yield text
            return
        yield from _read_jsonl(src, piece, data, skip_bad_lines, stats)
        return
    if src.format == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(src.path)
        col = pf.read_row_groups(list(range(piece.start, piece.end)), columns=[src.text_field]).column(0)
    else:
        col = _open_arrow(src.path).column(src.text_field).slice(piece.start, piece.end - piece.start)
    stats.bytes += col.nbytes
    for k, v in enumerate(col.to_pylist()):
        if not isinstance(v, str):
            if skip_bad_lines:
                stats.bad_lines += 1
                continue
            raise DataError(f"{src.path}: row {piece.start + k}: field {src.text_field!r} is "
                            f"{type(v).__name__}, not text; pass --skip-bad-lines to skip such rows")
        if _keep_doc(piece, piece.start + k):
            stats.documents += 1
            yield v


def _read_jsonl(src: Source, piece: Piece, data: bytes, skip_bad: bool, stats: ReadStats) -> Iterator[str]:
    field_ = src.text_field or "text"
    for k, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        line = piece.first_line + k
        try:
            obj = json.loads(raw)
        except ValueError as e:
            if skip_bad:
                stats.bad_lines += 1
                continue
            raise DataError(f"{src.path}:{line}: not valid JSON ({e}); fix the line or pass "
                            "--skip-bad-lines to skip bad lines") from e
        if not isinstance(obj, dict) or field_ not in obj:
            if skip_bad:
                stats.bad_lines += 1
                continue
            have = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{src.path}:{line}: no field {field_!r} (has: {have}); pass "
                            "--text-field NAME or --skip-bad-lines")
        v = obj[field_]
        if not isinstance(v, str):
            if skip_bad:
                stats.bad_lines += 1
                continue
            raise DataError(f"{src.path}:{line}: field {field_!r} is {type(v).__name__}, not text; "
                            "pass --skip-bad-lines to skip such lines")
        if _keep_doc(piece, line):
            stats.documents += 1
            yield v
