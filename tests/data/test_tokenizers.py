from __future__ import annotations

import pytest

from stoker.data.tokenizers import CharTokenizer, load_tokenizer, train_tokenizer
from stoker.errors import DataError

TEXT = ["def f(x):\n    return x * 2  # ünïcode ok\n", "class A:\n    pass\n"]


def test_char_roundtrip_and_loadable_by_hf_tokenizers(tmp_path):
    tok = CharTokenizer.from_texts(TEXT)
    ids = tok.encode(TEXT[0])
    assert tok.decode(ids) == TEXT[0]
    assert tok.eos_id == 0 and tok.vocab_size == len(set("".join(TEXT))) + 2
    tok.save(tmp_path / "t")
    again = load_tokenizer(tmp_path / "t")
    assert again.encode(TEXT[0]) == ids
    from tokenizers import Tokenizer  # its own library, no stoker

    hf = Tokenizer.from_file(str(tmp_path / "t" / "tokenizer.json"))
    assert hf.encode(TEXT[0]).ids == ids
    assert hf.decode(ids) == TEXT[0]
    assert tok.encode("€")[0] == tok.unk_id  # unseen character


def test_hf_bpe_train_save_load(tmp_path):
    tok = train_tokenizer(TEXT * 20, type="bpe", vocab_size=300)
    assert tok.model_type == "bpe" and tok.eos_id is not None
    ids = tok.encode(TEXT[0])
    assert tok.decode(ids) == TEXT[0]
    tok.save(tmp_path / "b")
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "b" / "tokenizer.json")).encode(TEXT[0]).ids == ids
    assert load_tokenizer(tmp_path / "b" / "tokenizer.json").encode(TEXT[0]) == ids
    assert load_tokenizer(tmp_path / "b").encode_batch(TEXT)[0] == ids


def test_unigram_and_sentencepiece(tmp_path):
    uni = train_tokenizer(TEXT * 30, type="unigram", vocab_size=60)
    assert uni.decode(uni.encode("class A:")) .strip() == "class A:"
    sp = train_tokenizer(TEXT * 30, type="bpe", vocab_size=300, library="sentencepiece")
    sp.save(tmp_path / "sp")
    import sentencepiece as spm

    proc = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp" / "tokenizer.model"))
    assert proc.encode("class A:") == load_tokenizer(tmp_path / "sp").encode("class A:")
    assert load_tokenizer(tmp_path / "sp" / "tokenizer.model").vocab_size == proc.get_piece_size()


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no tokenizer"):
        load_tokenizer(tmp_path / "empty")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a valid"):
        load_tokenizer(bad)
    with pytest.raises(DataError, match="unknown tokenizer type"):
        train_tokenizer(TEXT, type="wordpiece")


def test_char_fast_paths_match_plain_encoding():
    """The prepare fast paths (raw ASCII bytes, joined translate, scan-time char sets) give
    exactly what encoding each document and appending eos gives."""
    import numpy as np

    from stoker.data.tokenizers import char_set

    docs = ["plain ascii\n", "", "nul\x00inside", "ünï😀中", "x" * 5000, "tail"]
    tok = CharTokenizer(char_set(docs))
    assert tok.chars == sorted(set("".join(docs)))
    as_input = [d.encode("ascii") if d.isascii() else d for d in docs]  # what prepare passes
    assert char_set(as_input) == set("".join(docs))
    ends = [True, True, False, True, True, True]
    for eos in (0, None):
        want = []
        for d, e in zip(docs, ends):
            want += tok.encode(d) + ([eos] if e and eos is not None else [])
        for dtype in ("<u2", "<u4"):
            got = tok.encode_joined(as_input, ends, eos, np.dtype(dtype))
            assert got.dtype == np.dtype(dtype) and got.tolist() == want


def test_char_prepare_reports_bad_utf8_with_file_and_line(tmp_path):
    from stoker.data.prepare import prepare

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("fine\n")
    (tmp_path / "in" / "b.txt").write_bytes(b"line one\nline two \xff\xfe\n")
    with pytest.raises(DataError, match=r"b\.txt:2: not UTF-8"):
        prepare([tmp_path / "in"], tmp_path / "out", type="char", workers=1)
    assert not (tmp_path / "out").exists()
