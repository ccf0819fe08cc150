"""Evaluation metrics configured with key paths, accumulated over batches and processes.

A metric keeps sums (``update``), reduces them across ranks (``state`` is a 1-D tensor that
the evaluator all-reduces) and turns them into a number (``compute``).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Accuracy", "Metric", "Perplexity", "TokenLoss"]


class Metric:
    """Base: ``keys`` maps argument names to key paths; sums live in ``self.sums``."""

    n_sums = 2

    def __init__(self, **keys: str) -> None:
        self.keys: dict[str, str] = dict(keys)
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(self.n_sums, dtype=torch.float64)

    def update(self, **values: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class Accuracy(Metric):
    """Fraction of rows whose arg-max of ``logits`` equals ``labels``."""

    def __init__(self, logits: str = "preds.logits", labels: str = "batch.labels") -> None:
        super().__init__(logits=logits, labels=labels)

    @torch.no_grad()
    def update(self, *, logits: torch.Tensor, labels: torch.Tensor) -> None:  # type: ignore[override]
        pred = logits.argmax(dim=-1)
        self.sums[0] += (pred == labels).sum().item()
        self.sums[1] += labels.numel()

    def compute(self) -> float:
        return float(self.sums[0] / self.sums[1]) if self.sums[1] else float("nan")


class TokenLoss(Metric):
    """Mean cross entropy per token (exact over the whole split, not a mean of batch means)."""

    def __init__(
        self, logits: str = "preds.logits", labels: str = "batch.labels", ignore_index: int = -100
    ) -> None:
        super().__init__(logits=logits, labels=labels)
        self.ignore_index = ignore_index

    @torch.no_grad()
    def update(self, *, logits: torch.Tensor, labels: torch.Tensor) -> None:  # type: ignore[override]
        flat = labels.reshape(-1)
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), flat,
            ignore_index=self.ignore_index, reduction="sum",
        )
        self.sums[0] += nll.item()
        self.sums[1] += (flat != self.ignore_index).sum().item()

    def compute(self) -> float:
        return float(self.sums[0] / self.sums[1]) if self.sums[1] else float("nan")


class Perplexity(TokenLoss):
    """exp(mean token cross entropy): how many tokens the model hesitates between."""

    def compute(self) -> float:
        loss = super().compute()
        return math.exp(min(loss, 700.0))
