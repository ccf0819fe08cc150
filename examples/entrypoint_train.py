"""A user's script with stoker's front door: typed arguments, overrides, --dryrun, --help.

    python examples/entrypoint_train.py model.size=256 epochs=3 --yes
    python examples/entrypoint_train.py model=big_model --dryrun
    python examples/entrypoint_train.py --to-yaml run.yaml && python examples/entrypoint_train.py -c run.yaml
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import stoker


@dataclass
class ModelConfig:
    size: int = 128
    layers: int = 2
    activation: Literal["relu", "gelu"] = "relu"


@dataclass
class OptimizerConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@stoker.factory
def big_model() -> ModelConfig:
    """A larger model, selectable with model=big_model."""
    return ModelConfig(size=1024, layers=8)


@stoker.entrypoint
def train(model: ModelConfig, optimizer: OptimizerConfig = OptimizerConfig(),
          epochs: int = 10, out_dir: Path = Path("outputs/example")) -> None:
    """Train a (pretend) model; prints what it would do."""
    print(f"Training a {model.layers}-layer model of size {model.size} ({model.activation}) "
          f"for {epochs} epochs with lr={optimizer.lr}; outputs in {out_dir}")


if __name__ == "__main__":
    stoker.main(train)
