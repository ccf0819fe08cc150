"""Fixtures for config tests: a small importable module of targets with typed signatures."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

TARGETS = textwrap.dedent('''
    from __future__ import annotations
    from dataclasses import dataclass, field
    from pathlib import Path
    from typing import Annotated, Literal, Optional, Union
    from pydantic import BaseModel, ConfigDict, Field

    CALLS = []

    class Optim:
        def __init__(self, params=None, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                     weight_decay: float = 0.0):
            CALLS.append("Optim")
            self.params, self.lr, self.betas, self.weight_decay = params, lr, betas, weight_decay

    class Model:
        def __init__(self, dim: int, layers: int = 2, act: Literal["relu", "gelu"] = "relu",
                     out: Path = Path("out")):
            CALLS.append("Model")
            self.dim, self.layers, self.act, self.out = dim, layers, act, out

    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    def anything(**kwargs):
        return kwargs

    @dataclass
    class Data:
        path: Path
        seq_len: int = 64

    @dataclass
    class TrainConfig:
        data: Data
        steps: int = 10
        name: str = "run"
        model: dict = field(default_factory=dict)

    class GPT(BaseModel):
        model_config = ConfigDict(extra="forbid")
        architecture: Literal["gpt"] = "gpt"
        n_layers: int = 2
        dim: int = 32

    class RNN(BaseModel):
        model_config = ConfigDict(extra="forbid")
        architecture: Literal["rnn"] = "rnn"
        hidden: int = 64

    ModelConfig = Annotated[Union[GPT, RNN], Field(discriminator="architecture")]

    class Root(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: ModelConfig = GPT()
        out_dir: Path = Path("outputs")
        seed: int = 0
        optim: Optional[dict] = None
''')


@pytest.fixture
def targets_module(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """An importable module ``cfgtargets`` (also visible to subprocesses via PYTHONPATH)."""
    d = tmp_path_factory.mktemp("targets")
    (d / "cfgtargets.py").write_text(TARGETS)
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv("PYTHONPATH", str(d))
    sys.modules.pop("cfgtargets", None)
    from stoker.config import targets

    targets.import_target.cache_clear()
    import cfgtargets

    yield cfgtargets
    sys.modules.pop("cfgtargets", None)
    targets.import_target.cache_clear()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def w():
    """``w(path, text)`` writes a dedented file and returns its path."""
    return write
