"""Fixtures of the trainer tests: a tiny prepared char dataset (helpers in train_helpers.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_helpers import tiny_corpus_text  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char-level dataset prepared by `stoker.data.prepare` (once per test session)."""
    from stoker.data.prepare import prepare

    root = tmp_path_factory.mktemp("tiny_data")
    src = root / "corpus.txt"
    src.write_text(tiny_corpus_text(), encoding="utf-8")
    return prepare([str(src)], root / "char", type="char", split_ratios=(0.9, 0.1, 0.0),
                   workers=1)


