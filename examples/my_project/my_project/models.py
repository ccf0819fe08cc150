"""The model: a small MLP over the columns of a table, registered as ``tabular_mlp``.

Three pieces make it a stoker architecture: the ``nn.Module`` (its ``forward`` returns a
dict with ``logits``), a Pydantic config whose ``architecture`` Literal names it, and
``register_model``. A recipe then says ``model: {architecture: tabular_mlp, ...}`` (here
through the config group ``conf/model/tabular_mlp.yaml``: ``model=tabular_mlp``).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from stoker.models import register_model


class TabularMLPConfig(BaseModel):
    """An MLP classifier over numeric table columns."""

    model_config = ConfigDict(extra="forbid")

    architecture: Literal["tabular_mlp"] = "tabular_mlp"
    in_features: int = Field(4, gt=0, description="Numeric input columns.")
    hidden: int = Field(32, gt=0, description="Width of the hidden layers.")
    layers: int = Field(2, gt=0, description="Hidden layers.")
    num_classes: int = Field(3, gt=1, description="Output classes.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


class TabularMLP(nn.Module):
    def __init__(self, config: TabularMLPConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = config.in_features
        for _ in range(config.layers):
            blocks += [nn.Linear(width, config.hidden), nn.GELU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, config.num_classes)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.body(features))}


class LinearProbe(nn.Module):
    """A plain ``_target_`` model (no registration): its tensor output is ``preds.logits``."""

    def __init__(self, in_features: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


register_model("tabular_mlp", TabularMLPConfig, TabularMLP)
