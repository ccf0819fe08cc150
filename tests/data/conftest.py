"""Small real corpora for the data tests (made on the fly, a few hundred KB at most)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stoker.data.corpus import default_corpus_files


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """~40 stdlib files copied into a directory tree (text input)."""
    d = tmp_path_factory.mktemp("corpus")
    for i, f in enumerate(default_corpus_files()[:40]):
        sub = d / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        (sub / f"{i:03d}_{f.name}.txt").write_text(f.read_text("utf-8"), "utf-8")
    return d


@pytest.fixture(scope="session")
def jsonl_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("jsonl")
    p = d / "docs.jsonl"
    with p.open("w") as f:
        for i, src in enumerate(default_corpus_files()[:30]):
            f.write(json.dumps({"id": i, "text": src.read_text("utf-8")[:3000]}) + "\n")
    return p


@pytest.fixture(scope="session")
def bpe_tokenizer_dir(tmp_path_factory, corpus_dir) -> Path:
    from stoker.data.tokenizer_training import train_tokenizer_to_dir

    out = tmp_path_factory.mktemp("tok") / "bpe"
    train_tokenizer_to_dir([str(corpus_dir)], out, type="bpe", vocab_size=400)
    return out
