"""Numeric precision: one object owns autocast and the fp16 GradScaler.

``fp32`` does nothing; ``bf16-mixed`` runs the forward under ``torch.autocast`` in bfloat16
(works on CPU and recent GPUs, no scaler needed); ``fp16-mixed`` runs it in float16 and
scales the loss with a ``torch.amp.GradScaler`` so small gradients do not underflow. The
trainer never touches the scaler directly: it calls ``backward``, ``unscale`` and ``step``.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from stoker.errors import UserError

__all__ = ["Precision"]


class Precision:
    """Autocast context + GradScaler for one precision setting on one device."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.name = precision
        self.device = device
        self.dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if precision == "fp32":
            return
        if precision == "bf16-mixed":
            if device.type == "cuda" and not torch.cuda.is_bf16_supported():
                raise UserError(
                    "trainer.precision=bf16-mixed: this GPU has no bfloat16 support; "
                    "use trainer.precision=fp16-mixed or fp32"
                )
            self.dtype = torch.bfloat16
            return
        if precision == "fp16-mixed":
            if device.type != "cuda":
                raise UserError(
                    "trainer.precision=fp16-mixed needs a CUDA GPU: float16 autocast with loss "
                    "scaling only pays off on GPUs, and on CPU it is slow and numerically "
                    "fragile. On this machine use trainer.precision=bf16-mixed (CPU autocast) "
                    "or trainer.precision=fp32."
                )
            self.dtype = torch.float16
            self.scaler = torch.amp.GradScaler("cuda")
            return
        raise UserError(
            f"trainer.precision={precision!r} is not one of fp32, bf16-mixed, fp16-mixed"
        )

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass and the loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale before clipping or measuring them."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (skipped by the scaler when fp16 gradients overflowed)."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
