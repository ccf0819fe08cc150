"""Shared test fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's ~/.stoker registry and W&B/MLflow state."""
    home = tmp_path_factory.mktemp("stoker_home")
    monkeypatch.setenv("STOKER_HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def stoker_cmd() -> list[str]:
    """The real ``stoker`` command of this environment, for subprocess tests."""
    exe = Path(sys.executable).with_name("stoker")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stoker"]


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    return env
