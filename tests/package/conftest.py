"""Fixtures of the package tests: tiny trained runs (GPT and RNN) on a tiny char dataset."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # crafted.py: hostile inputs

from train_helpers import run_cli, tiny_corpus_text, tiny_overrides  # noqa: E402


@pytest.fixture(scope="session")
def char_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stoker.data.prepare import prepare

    root = tmp_path_factory.mktemp("pkg_data")
    src = root / "corpus.txt"
    src.write_text(tiny_corpus_text(), encoding="utf-8")
    return prepare([str(src)], root / "char", type="char", split_ratios=(0.9, 0.1, 0.0),
                   workers=1)


def _train(root: Path, data: Path, recipe: str, *extra: str) -> Path:
    out = root / "run"
    exe = [str(Path(sys.executable).with_name("stoker"))]
    overrides = tiny_overrides(data, out, *extra)
    if recipe != "gpt-char":
        overrides = [o for o in overrides
                     if not o.startswith(("model.n_heads", "model.n_kv", "~callbacks"))]
    run_cli(exe, "train", recipe, *overrides, "trainer.max_steps=10", "--yes", check=True)
    return out


@pytest.fixture(scope="session")
def gpt_run(char_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step tiny gpt-char run directory (checkpoints at steps 5 and 10)."""
    return _train(tmp_path_factory.mktemp("gpt"), char_data, "gpt-char")


@pytest.fixture(scope="session")
def rnn_run(char_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-step tiny RNN run on the same data."""
    return _train(tmp_path_factory.mktemp("rnn"), char_data, "rnn-char")
