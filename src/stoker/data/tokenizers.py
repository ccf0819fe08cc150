"""Tokenizers behind one small interface: character-level, SentencePiece, HF ``tokenizers``.

Why one interface: ``stoker data prepare``, the datasets and generation only need
encode/decode, a vocabulary size and an end-of-document id, whatever library made the
tokenizer. Each kind saves files its own library can load without stoker:

- ``char``: ``tokenizer.json`` (a HF ``tokenizers`` WordLevel model over single characters)
  plus ``stoker_tokenizer.json`` (the character list; stoker encodes with a numpy lookup
  table, which is what makes char-level prepare run at hundreds of MB/s).
- ``hf``: ``tokenizer.json`` (load with ``tokenizers.Tokenizer.from_file``).
- ``sentencepiece``: ``tokenizer.model`` (load with ``sentencepiece.SentencePieceProcessor``).

A ``stoker_tokenizer.json`` marker in the directory names the kind; a directory with only
``tokenizer.json`` or a ``*.model`` file (or such a file given directly) loads too.

A tokenizer directory may come from someone else (an archive, a Hugging Face directory),
so loading reads it as untrusted (:mod:`stoker.untrusted`): the marker must be a JSON
object of the known shape, the file it names must stay inside the directory (no absolute
path, no ``..`` out, no link out), and every file is a regular file read with a size
limit (:data:`~stoker.untrusted.MAX_TOKENIZER_BYTES`), never a device or a FIFO.

Longer than most modules (~560 lines) on purpose: the three kinds share the interface,
the marker format and :func:`load_tokenizer`'s detection, and are read side by side when
one of them changes; training one from input files for the CLI lives apart
(``tokenizer_training``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from stoker.atomic import atomic_write_bytes
from stoker.data._io import atomic_write_json
from stoker.errors import DataError
from stoker.untrusted import MAX_JSON_BYTES, MAX_TOKENIZER_BYTES, inside, read_file, strict_json

MARKER = "stoker_tokenizer.json"
EOS_CANDIDATES = ("<|endoftext|>", "<eos>", "</s>", "<|end_of_text|>", "<|eot_id|>", "[SEP]")
KINDS = ("char", "hf", "sentencepiece")


class Tokenizer:
    """What stoker needs from a tokenizer. Subclasses wrap one library each."""

    kind: str = "base"

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def eos_id(self) -> int | None:
        raise NotImplementedError

    @property
    def special_tokens(self) -> dict[str, int]:
        return {}

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_docs(self, texts: Sequence[str]) -> list[Any]:
        """One id sequence (list or numpy array) per document; ``prepare``'s hot path."""
        return self.encode_batch(texts)

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary recorded in a prepared dataset's metadata."""
        return {"type": self.model_type, "library": self.kind, "vocab_size": self.vocab_size,
                "eos_id": self.eos_id}

    @property
    def model_type(self) -> str:
        """What a user calls it: ``char``, ``bpe``, ``unigram``, ``wordpiece``, ``sentencepiece``."""
        return self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eos_id={self.eos_id})"


# ----------------------------------------------------------------------------------- char


class CharTokenizer(Tokenizer):
    """One id per character. Ids 0 and 1 are ``<eos>`` and ``<unk>``; then characters in
    code-point order, so the same corpus always gives the same ids."""

    kind = "char"
    SPECIALS = ("<eos>", "<unk>")

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        for c in chars:
            if len(c) != 1:
                raise DataError(f"char tokenizer vocabulary entries must be single characters, got {c!r}")
        self.chars: list[str] = chars
        self._itos: list[str] = [*self.SPECIALS, *chars]
        self._stoi: dict[str, int] = {c: i + len(self.SPECIALS) for i, c in enumerate(chars)}
        self._lut = None

    # -- building
    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        return cls(char_set(texts))

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def eos_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def special_tokens(self) -> dict[str, int]:
        return {"<eos>": 0, "<unk>": 1}

    def _table(self):
        if self._lut is None:
            import numpy as np

            lut = np.full(0x110000, self.unk_id,
                          dtype=np.uint16 if self.vocab_size <= 1 << 16 else np.uint32)
            for c, i in self._stoi.items():
                lut[ord(c)] = i
            self._lut = lut
        return self._lut

    def encode_array(self, text: str):
        """Encode one string to an int32 numpy array with a lookup table (no Python loop)."""
        import numpy as np

        lut = self._table()
        if text.isascii():
            codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        else:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        return lut[codes]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_docs(self, texts: Sequence[str]) -> list[Any]:
        return [self.encode_array(t) for t in texts]

    def _byte_table(self, eos: int | None) -> bytes:
        """``bytes.translate`` table: ASCII byte -> id, and 0xFF (never in ASCII) -> ``eos``.

        Every ASCII character's id is below 130 (ids are 2 + code-point rank), so the ids
        of ASCII text fit in one byte and ``translate`` maps a whole unit in one C pass.
        """
        lut = self._table()
        table = bytearray(lut[:128].astype("u1").tobytes()) + bytes(128)
        if eos is not None:
            table[0xFF] = eos
        return bytes(table)

    def encode_joined(self, texts: Sequence[str | bytes], ends: Sequence[bool], eos: int | None, dtype):
        """All documents of a unit in one array, ``eos`` after each ending document.

        ``texts`` holds ``str`` or pure-ASCII ``bytes`` (raw file bytes, never decoded).
        Runs of ASCII documents are joined (a 0xFF byte standing for ``eos``) and mapped to
        ids by one ``bytes.translate``; other documents go through the code-point table.
        This is what makes char-level prepare I/O-bound.
        """
        import numpy as np

        dtype = np.dtype(dtype)
        eos_ok = eos is None or 0 <= eos < 256
        table = self._byte_table(eos if eos_ok else None)
        sep = b"\xff" if eos is not None and eos_ok else b""
        eos_arr = np.array([eos if eos is not None else 0], dtype=dtype)
        parts: list[Any] = []
        run: list[bytes] = []

        def flush() -> None:
            if run:
                parts.append(np.frombuffer(b"".join(run).translate(table), dtype=np.uint8))
                run.clear()

        for t, e in zip(texts, ends):
            if isinstance(t, str):
                if t.isascii():
                    t = t.encode("ascii")
                else:
                    flush()
                    parts.append(self._table()[np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32)])
                    if e and eos is not None:
                        parts.append(eos_arr)
                    continue
            run.append(t)
            if e and eos is not None:
                if sep:
                    run.append(sep)
                else:
                    flush()
                    parts.append(eos_arr)
        flush()
        if not parts:
            return np.zeros(0, dtype=dtype)
        if len(parts) == 1:
            return parts[0].astype(dtype)
        return np.concatenate(parts, dtype=dtype, casting="same_kind")

    def decode(self, ids: Sequence[int]) -> str:
        itos = self._itos
        out = []
        for i in ids:
            i = int(i)
            if i < len(self.SPECIALS):
                continue
            out.append(itos[i] if 0 <= i < len(itos) else "")
        return "".join(out)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        vocab = {tok: i for i, tok in enumerate(self._itos)}
        hf = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for i, s in enumerate(self.SPECIALS)
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[\\s\\S]"},
                              "behavior": "Isolated", "invert": False},
            "post_processor": None,
            "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        }
        atomic_write_bytes(d / "tokenizer.json",
                           json.dumps(hf, ensure_ascii=False).encode("utf-8"), fsync=False)
        atomic_write_json(d / MARKER, {"type": "char", "file": "tokenizer.json",
                                       "specials": list(self.SPECIALS), "chars": "".join(self.chars)},
                          fsync=False)
        return d


def char_set(texts: Iterable[str | bytes]) -> set[str]:
    """The set of characters in ``texts`` (``str`` or pure-ASCII ``bytes``)."""
    b = CharSetBuilder()
    for t in texts:
        b.add(t)
    return b.chars()


class CharSetBuilder:
    """Collects the characters of many texts; mergeable across worker processes.

    Fast because most text repeats characters already seen: each text's UTF-8 bytes lose
    the ASCII bytes seen so far in one ``bytes.translate`` pass, and only what is left
    (usually nothing) is examined.
    """

    def __init__(self) -> None:
        self.seen = bytearray()  # distinct ASCII bytes seen so far
        self.other: set[int] = set()  # non-ASCII code points

    def add(self, t: str | bytes) -> None:
        """Add a ``str`` or pure-ASCII ``bytes``."""
        import numpy as np

        if isinstance(t, str):
            b = t.encode("ascii") if t.isascii() else t.encode("utf-8", "surrogatepass")
        else:
            b = t
        rest = b.translate(None, self.seen) if self.seen else b
        if not rest:
            return
        if rest.isascii():
            if len(rest) > 4096:
                new = np.flatnonzero(np.bincount(np.frombuffer(rest, dtype=np.uint8), minlength=128)).tolist()
            else:
                new = set(rest)
            self.seen.extend(sorted(new))
            return
        # removing ASCII bytes from UTF-8 leaves whole multi-byte sequences: still UTF-8
        s = rest.decode("utf-8", "surrogatepass")
        if len(s) <= 1 << 16:
            codes = {ord(c) for c in set(s)}
        else:
            codes = set(np.unique(np.frombuffer(s.encode("utf-32-le", "surrogatepass"),
                                                dtype=np.uint32)).tolist())
        self.seen.extend(sorted(c for c in codes if c < 128 and c not in self.seen))
        self.other.update(c for c in codes if c >= 128)

    def state(self) -> tuple[bytes, list[int]]:
        return bytes(self.seen), sorted(self.other)

    def merge(self, state: tuple[bytes, list[int]]) -> None:
        seen, other = state
        self.seen.extend(sorted(set(seen) - set(self.seen)))
        self.other.update(other)

    def chars(self) -> set[str]:
        return {chr(c) for c in self.other} | {chr(c) for c in self.seen}


class HFTokenizer(Tokenizer):
    """A Hugging Face ``tokenizers`` tokenizer (BPE, unigram, WordPiece, any tokenizer.json)."""

    kind = "hf"

    def __init__(self, tok: Any, eos_token: str | None = None):
        self.tok = tok
        vocab = tok.get_vocab(with_added_tokens=True)
        self._vocab_size = max(vocab.values()) + 1 if vocab else 0
        if eos_token is None:
            eos_token = next((t for t in EOS_CANDIDATES if t in vocab), None)
        self.eos_token = eos_token
        self._eos_id = vocab.get(eos_token) if eos_token else None
        self._specials = {t.content: i for i, t in tok.get_added_tokens_decoder().items() if t.special}

    @classmethod
    def from_file(cls, path: str | Path, eos_token: str | None = None) -> HFTokenizer:
        from tokenizers import Tokenizer as _Tok

        # read here, bounded (the library would read any file whole, a device included)
        data = read_file(path, MAX_TOKENIZER_BYTES, f"tokenizer file {path}", DataError)
        try:
            tok = _Tok.from_str(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not a valid Hugging Face tokenizer.json (not UTF-8 "
                            f"text: {e.reason} at byte {e.start})") from None
        except Exception as e:  # the library raises a bare Exception on bad JSON
            raise DataError(f"{path}: not a valid Hugging Face tokenizer.json ({e})") from e
        return cls(tok, eos_token)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eos_id(self) -> int | None:
        return self._eos_id

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def model_type(self) -> str:
        try:
            return str(json.loads(self.tok.to_str())["model"]["type"]).lower()
        except (ValueError, KeyError, TypeError):
            return "hf"

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        fn = getattr(self.tok, "encode_batch_fast", None) or self.tok.encode_batch
        return [e.ids for e in fn(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(d / "tokenizer.json", self.tok.to_str().encode("utf-8"), fsync=False)
        atomic_write_json(d / MARKER, {"type": "hf", "file": "tokenizer.json",
                                       "eos_token": self.eos_token}, fsync=False)
        return d


# -------------------------------------------------------------------------- sentencepiece


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece ``.model`` (what Craft's subword path uses)."""

    kind = "sentencepiece"

    def __init__(self, model_bytes: bytes):
        import sentencepiece as spm

        self.model_bytes = model_bytes
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(model_bytes)
        except Exception as e:  # the library raises RuntimeError/OSError with no path
            raise DataError(f"not a valid SentencePiece model ({e})") from e
        self.sp = sp

    @classmethod
    def from_file(cls, path: str | Path) -> SentencePieceTokenizer:
        data = read_file(path, MAX_TOKENIZER_BYTES, f"SentencePiece model {path}", DataError)
        try:
            return cls(data)
        except DataError as e:
            raise DataError(f"{path}: {e}") from e

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    @property
    def eos_id(self) -> int | None:
        i = int(self.sp.eos_id())
        return i if i >= 0 else None

    @property
    def special_tokens(self) -> dict[str, int]:
        out = {}
        for fn in (self.sp.unk_id, self.sp.bos_id, self.sp.eos_id, self.sp.pad_id):
            i = int(fn())
            if i >= 0:
                out[self.sp.id_to_piece(i)] = i
        return out

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(d / "tokenizer.model", self.model_bytes, fsync=False)
        atomic_write_json(d / MARKER, {"type": "sentencepiece", "file": "tokenizer.model"}, fsync=False)
        return d


# -------------------------------------------------------------------------------- loading


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer from a directory saved by stoker, a ``tokenizer.json``, or a ``.model``.

    A prepared dataset directory works too (its ``tokenizer/`` sub-directory is used).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"tokenizer path {p} does not exist; give a directory holding tokenizer.json or "
            "tokenizer.model (train one with `stoker data train-tokenizer`)"
        )
    if p.is_dir():
        if (p / "metadata.json").is_file() and (p / "tokenizer").is_dir():
            p = p / "tokenizer"
        marker = p / MARKER
        if marker.exists() or marker.is_symlink():
            return _from_marker(p, marker)
        if (p / "tokenizer.json").is_file():
            return HFTokenizer.from_file(p / "tokenizer.json")
        models = sorted(p.glob("*.model"))
        if len(models) == 1:
            return SentencePieceTokenizer.from_file(models[0])
        raise DataError(
            f"{p} holds no tokenizer (expected {MARKER}, tokenizer.json or one *.model file)"
        )
    if p.suffix == ".model":
        return SentencePieceTokenizer.from_file(p)
    if p.suffix == ".json":
        if p.name == MARKER:
            return load_tokenizer(p.parent)
        return HFTokenizer.from_file(p)
    raise DataError(f"{p}: unknown tokenizer file type (expected a directory, tokenizer.json or .model)")


def _from_marker(d: Path, marker: Path) -> Tokenizer:
    """The tokenizer a ``stoker_tokenizer.json`` describes, its fields checked first."""
    info = strict_json(read_file(marker, MAX_JSON_BYTES, str(marker), DataError), str(marker),
                       DataError)
    if not isinstance(info, dict):
        raise DataError(f"{marker}: expected a JSON object like {{\"type\": \"hf\", \"file\": "
                        f"\"tokenizer.json\"}}, got a JSON {type(info).__name__}")
    kind = info.get("type")
    if kind not in KINDS:
        raise DataError(f"{marker}: unknown tokenizer type {kind!r} (expected one of {KINDS})")
    for key, types in (("chars", str), ("eos_token", (str, type(None)))):
        if key in info and not isinstance(info[key], types):
            raise DataError(f"{marker}: {key!r} must be a string, got {info[key]!r}")
    if kind == "char":
        return CharTokenizer(info.get("chars", ""))
    f = inside(d, info.get("file"), f"{marker}: 'file'", DataError)
    if kind == "hf":
        return HFTokenizer.from_file(f, info.get("eos_token"))
    return SentencePieceTokenizer.from_file(f)


# ------------------------------------------------------------------------------- training


def train_tokenizer(
    texts: Iterable[str],
    *,
    type: str = "bpe",
    vocab_size: int = 8192,
    library: str = "hf",
    min_frequency: int = 2,
    progress: bool = False,
    length: int | None = None,
) -> Tokenizer:
    """Train a tokenizer of ``type`` (``bpe``, ``unigram`` or ``char``) on ``texts``.

    ``library`` picks Hugging Face ``tokenizers`` (default) or ``sentencepiece`` for the
    subword kinds. Deterministic for the same texts and settings.
    """
    if type == "char":
        return CharTokenizer.from_texts(texts)
    if type not in ("bpe", "unigram"):
        raise DataError(f"unknown tokenizer type {type!r}; use one of: bpe, unigram, char")
    if vocab_size < 16:
        raise DataError(f"--vocab-size {vocab_size} is too small (use at least 16)")
    if library == "hf":
        return _train_hf(texts, type, vocab_size, min_frequency, progress, length)
    if library == "sentencepiece":
        return _train_sp(texts, type, vocab_size)
    raise DataError(f"unknown tokenizer library {library!r}; use hf or sentencepiece")


def _train_hf(texts, type, vocab_size, min_frequency, progress, length) -> HFTokenizer:
    from tokenizers import Tokenizer as _Tok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    if type == "bpe":
        tok = _Tok(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=progress,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        eos = "<|endoftext|>"
    else:
        tok = _Tok(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, show_progress=progress, special_tokens=["<eos>", "<unk>"],
            unk_token="<unk>",
        )
        eos = "<eos>"
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return HFTokenizer(tok, eos)


def _train_sp(texts, type, vocab_size) -> SentencePieceTokenizer:
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    try:
        _sp_train(spm, texts, buf, type, vocab_size)
    except RuntimeError as e:  # sentencepiece reports bad settings as RuntimeError
        msg = str(e).split("] ", 1)[-1]
        raise DataError(f"sentencepiece training failed: {msg}") from e
    return SentencePieceTokenizer(buf.getvalue())


def _sp_train(spm, texts, buf, type, vocab_size) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=(line for t in texts for line in t.splitlines() if line.strip()),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=type,
        character_coverage=1.0,
        hard_vocab_limit=False,
        byte_fallback=True,
        num_threads=1,
        minloglevel=2,
        max_sentence_length=1 << 16,
    )
