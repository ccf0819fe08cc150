"""What a callback may read and set on the trainer: :class:`TrainerView`.

Callbacks receive the :class:`~stoker.train.trainer.Trainer` itself, typed as this
Protocol, so a type checker tells a callback author what is there and the trainer's
private loop state stays private. Tests and other loops may pass any object with these
attributes (a ``SimpleNamespace`` will do for the ones a callback touches).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from stoker.train.checkpoint import CheckpointManager
    from stoker.train.recipe import TrainRecipe

__all__ = ["TrainerView"]


class TrainerView(Protocol):
    """The trainer as callbacks see it.

    Read: ``recipe`` (the typed recipe the loop runs), ``config`` (the resolved plain
    config the run records in ``config.yaml`` and its checkpoints), ``model`` (the plain
    module, not the DDP/compile wrapper), ``optimizer``, ``scheduler``, ``step`` (optimizer
    steps done), ``epoch``, ``max_steps``, ``logger`` (``log(metrics, step)``, maybe
    ``log_text``), ``run_dir``, ``tokenizer`` (None for non-text data), ``data`` (the
    opened datasets), ``device``, ``checkpoints`` (the run's CheckpointManager),
    ``is_rank_zero``, ``last_metrics`` / ``last_eval`` (the latest logged step and
    evaluation metrics).

    Set, to stop at the next step boundary: ``should_stop``, ``stop_reason`` and
    ``stop_failed`` (use :func:`stoker.train.callbacks.request_stop`). With ``stop_failed``
    the trainer saves nothing and ends with ``RunError(stop_reason)``.

    Call: ``save_checkpoint()`` (every rank takes part) and ``run_eval()``.
    """

    recipe: TrainRecipe
    config: dict[str, Any]
    model: nn.Module | None
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    step: int
    epoch: int
    max_steps: int
    should_stop: bool
    stop_reason: str
    stop_failed: bool
    logger: Any
    run_dir: Path | None
    tokenizer: Any
    data: Any
    device: torch.device
    checkpoints: CheckpointManager | None
    is_rank_zero: bool
    last_metrics: dict[str, float]
    last_eval: dict[str, float]

    def save_checkpoint(self) -> Path | None: ...

    def run_eval(self) -> dict[str, float]: ...
