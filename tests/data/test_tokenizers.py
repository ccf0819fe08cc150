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
