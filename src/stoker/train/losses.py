"""Losses configured with key paths (``logits="preds.logits", labels="batch.labels"``).

A loss is a small object: ``keys`` maps its argument names to key paths in the step context;
``__call__(**values) -> Tensor`` computes a scalar. ``weight`` scales it in the total.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["CrossEntropy", "Loss", "MSE"]


class Loss:
    """Base: subclasses list their key arguments in ``keys`` and implement ``compute``."""

    def __init__(self, *, weight: float = 1.0, **keys: str) -> None:
        self.weight = float(weight)
        self.keys: dict[str, str] = dict(keys)

    def __call__(self, **values: Any) -> torch.Tensor:
        return self.compute(**values)

    def compute(self, **values: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.keys.items())
        return f"{type(self).__name__}({args}, weight={self.weight})"


class CrossEntropy(Loss):
    """Mean cross entropy of ``logits [..., C]`` against integer ``labels [...]``.

    Works for language models (``[B, T, V]`` vs ``[B, T]``) and classifiers (``[B, C]`` vs
    ``[B]``); positions labelled ``ignore_index`` do not count.
    """

    def __init__(
        self,
        logits: str = "preds.logits",
        labels: str = "batch.labels",
        *,
        ignore_index: int = -100,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight=weight, logits=logits, labels=labels)
        self.ignore_index = ignore_index

    def compute(self, *, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=self.ignore_index,
        )


class MSE(Loss):
    """Mean squared error between ``preds`` and ``targets``."""

    def __init__(self, preds: str, targets: str, *, weight: float = 1.0) -> None:
        super().__init__(weight=weight, preds=preds, targets=targets)

    def compute(self, *, preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.mse_loss(preds.float(), targets.float())
