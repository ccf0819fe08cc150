"""Fixtures of the launch tests: the tiny char dataset of the trainer tests, the real CLI,
and a scratch project directory to launch from."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from train_helpers import tiny_corpus_text  # noqa: E402

from tests._shared.engines import (  # noqa: E402,F401 - fixtures
    docker_engine,
    docker_image,
    slurm_cluster,
    sshd_localhost,
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stoker.data.prepare import prepare

    root = tmp_path_factory.mktemp("launch_data")
    src = root / "corpus.txt"
    src.write_text(tiny_corpus_text(), encoding="utf-8")
    return prepare([str(src)], root / "char", type="char", split_ratios=(0.9, 0.1, 0.0),
                   workers=1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project directory (the launch's working directory)."""
    p = tmp_path / "project"
    p.mkdir()
    return p


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: this test's STOKER_HOME, one thread, this tree's sources."""
    e = dict(os.environ)
    e.setdefault("PYTHONHASHSEED", "0")
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return e
