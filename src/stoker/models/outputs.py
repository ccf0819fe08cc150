"""A model's forward outputs as the step's ``preds`` mapping (what loss keys point into).

Built-in models return ``{"logits": ...}``. A user's module may return a dict (kept as is),
a single tensor (becomes ``preds.logits``) or a tuple/list, whose items are named by the
recipe's ``model_outputs: [a, b]``. Anything else, or a tuple with no names, is a
:class:`~stoker.errors.ConfigError` that says what the forward returned.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stoker.errors import ConfigError, ConfigProblem

__all__ = ["as_preds", "describe_output"]


def describe_output(out: Any) -> str:
    """A short description of a forward's return value: types and shapes, no values."""
    shape = getattr(out, "shape", None)
    if shape is not None:
        return f"a tensor of shape {list(shape)}"
    if isinstance(out, Mapping):
        inner = ", ".join(f"{k!r}: {describe_output(v)}" for k, v in out.items())
        return f"a dict {{{inner}}}"
    if isinstance(out, (tuple, list)):
        inner = ", ".join(describe_output(v) for v in out)
        return f"a {type(out).__name__} of {len(out)} ({inner})"
    return f"a {type(out).__name__}"


def as_preds(out: Any, names: Sequence[str] | None = None) -> Any:
    """``preds`` from a forward's return value (see the module docstring)."""
    if isinstance(out, Mapping):
        return out
    if names:
        if isinstance(out, (tuple, list)) and len(out) == len(names):
            return dict(zip(names, out))
        if not isinstance(out, (tuple, list)) and len(names) == 1:
            return {names[0]: out}
        raise ConfigError(problems=[ConfigProblem(
            "model_outputs", f"names {len(names)} outputs ({', '.join(names)}) but the "
            f"model's forward returned {describe_output(out)}")])
    if getattr(out, "shape", None) is not None:
        return {"logits": out}
    if isinstance(out, (tuple, list)):
        raise ConfigError(problems=[ConfigProblem(
            "model_outputs", f"the model's forward returned {describe_output(out)}; name "
            f"its items so losses can use them, e.g. model_outputs: "
            f"[{', '.join(f'out{i}' for i in range(len(out)))}] (then preds.out0, ...)")])
    raise ConfigError(problems=[ConfigProblem(
        "model", f"the model's forward returned {describe_output(out)}; it must return a "
        "dict of tensors, a tensor (preds.logits) or a tuple named by model_outputs")])
