"""A loss, a metric and a callback of your own, wired in by key paths like the built-ins."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from stoker import Callback
from stoker.train.losses import Loss
from stoker.train.metrics import Metric


class SmoothedCrossEntropy(Loss):
    """Cross entropy against labels smoothed by ``smoothing``."""

    def __init__(self, logits: str, labels: str, *, smoothing: float = 0.1,
                 weight: float = 1.0) -> None:
        super().__init__(weight=weight, logits=logits, labels=labels)
        self.smoothing = smoothing

    def compute(self, *, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.smoothing)


class BalancedAccuracy(Metric):
    """Mean over classes of the per-class recall (sums kept per class, so it reduces
    exactly over batches and processes)."""

    def __init__(self, logits: str, labels: str, num_classes: int = 3) -> None:
        self.n_sums = 2 * num_classes
        self.num_classes = num_classes
        super().__init__(logits=logits, labels=labels)

    @torch.no_grad()
    def update(self, *, logits: torch.Tensor, labels: torch.Tensor) -> None:
        hit = (logits.argmax(-1) == labels).double()
        k = self.num_classes
        self.sums[:k] += torch.zeros(k, dtype=torch.float64).index_add_(0, labels, hit)
        self.sums[k:] += torch.bincount(labels, minlength=k).double()

    def compute(self) -> float:
        k = self.num_classes
        seen = self.sums[k:] > 0
        return float((self.sums[:k][seen] / self.sums[k:][seen]).mean()) if seen.any() else 0.0


class SamplesSeen(Callback):
    """Logs how many training rows the run has seen; its count survives a resume."""

    name = "SamplesSeen"

    def __init__(self) -> None:
        self.seen = 0

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        self.seen += int(metrics.get("num_samples", 0))
        metrics["samples_seen"] = float(self.seen)

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state["seen"])
