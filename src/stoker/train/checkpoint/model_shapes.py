"""Does a checkpoint's model state fit a model? One line per tensor that does not."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_model_compatible"]


def check_model_compatible(model: Any, state: Mapping[str, Any]) -> list[str]:
    """Problems loading ``state`` (a model state dict) into ``model``; empty when it fits.

    Each entry names one tensor: a shape mismatch, a tensor the checkpoint lacks, or one the
    model does not have. The trainer raises CheckpointError listing them, so a user who
    changed ``model.dim`` sees exactly which weights disagree.
    """
    own = model.state_dict() if hasattr(model, "state_dict") else dict(model)
    problems: list[str] = []
    for name, t in own.items():
        if name not in state:
            problems.append(f"{name}: missing from the checkpoint (model has shape {_shape(t)})")
            continue
        other = state[name]
        if hasattr(other, "shape") and tuple(other.shape) != tuple(t.shape):
            problems.append(
                f"{name}: checkpoint has shape {_shape(other)}, model has shape {_shape(t)}"
            )
    for name, t in state.items():
        if name not in own:
            problems.append(f"{name}: in the checkpoint (shape {_shape(t)}) but not in the model")
    for prefix in ("module.", "_orig_mod."):
        ckpt_has = any(k.startswith(prefix) for k in state)
        model_has = any(k.startswith(prefix) for k in own)
        if problems and ckpt_has != model_has:
            where = "checkpoint" if ckpt_has else "model"
            problems.append(
                f"hint: the {where}'s tensor names start with {prefix!r} (a DDP or torch.compile "
                "wrapper); save and load the unwrapped module's state dict"
            )
    return problems


def _shape(t: Any) -> str:
    shape = getattr(t, "shape", None)
    return "(" + ", ".join(str(int(s)) for s in shape) + ")" if shape is not None else "?"
