"""Kauldron-style keys: string paths that wire batch, predictions and objectives together.

A loss configured as ``CrossEntropy(logits="preds.logits", labels="batch.labels")`` does not
know where its inputs come from; the trainer builds a *context* each step
(``{"batch": ..., "preds": ..., "step": ...}``) and :func:`get_by_key` picks the values.
:func:`check_keys` runs once on a probe batch before training so that a typo fails in
seconds with the available keys and a "did you mean", not after an hour of training.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from stoker.errors import ConfigError, ConfigProblem

__all__ = ["MissingKey", "available_keys", "check_keys", "check_recipe_keys", "get_by_key"]

PREFIXES = ("batch", "preds", "step")


class MissingKey(LookupError):
    """A key path does not exist in the context (internal; check_keys turns it into ConfigError)."""


def _child(obj: Any, part: str) -> Any:
    if isinstance(obj, Mapping):
        if part in obj:
            return obj[part]
    elif isinstance(obj, (list, tuple)) and part.isdigit() and int(part) < len(obj):
        return obj[int(part)]
    elif not part.startswith("_") and hasattr(obj, part):
        return getattr(obj, part)
    raise MissingKey(part)


def _split(key: str) -> list[str]:
    """``preds.cameras[0].pos`` -> ``["preds", "cameras", "0", "pos"]``."""
    return [p for p in key.replace("[", ".").replace("]", "").split(".") if p]


def get_by_key(context: Mapping[str, Any], key: str) -> Any:
    """The value at ``key`` (``a.b`` matches ``a["b"]`` or ``a.b``; ``a[0]`` indexes)."""
    obj: Any = context
    for part in _split(key):
        obj = _child(obj, part)
    return obj


def available_keys(context: Mapping[str, Any], max_depth: int = 3) -> list[str]:
    """Every key path reachable in ``context`` through mappings (for error messages)."""
    out: list[str] = []

    def walk(obj: Any, prefix: str, depth: int) -> None:
        if isinstance(obj, Mapping) and depth < max_depth:
            for k, v in obj.items():
                path = f"{prefix}.{k}" if prefix else str(k)
                out.append(path)
                walk(v, path, depth + 1)

    walk(context, "", 0)
    return out


def check_keys(
    context: Mapping[str, Any], wanted: Iterable[tuple[str, str]]
) -> None:
    """Raise one ConfigError listing every ``(config_path, key)`` that does not resolve.

    Each problem names the config path holding the key, the keys that do exist and the
    closest match.
    """
    problems: list[ConfigProblem] = []
    known = available_keys(context)
    for where, key in wanted:
        if not isinstance(key, str):
            problems.append(ConfigProblem(where, f"a key must be a string like 'preds.logits', got {key!r}"))
            continue
        try:
            get_by_key(context, key)
        except MissingKey:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            leaves = ", ".join(k for k in known if k.split(".")[0] in PREFIXES) or "(none)"
            problems.append(
                ConfigProblem(where, f"key '{key}' does not exist.{hint} Available keys: {leaves}")
            )
    if problems:
        raise ConfigError(problems=problems)


def check_recipe_keys(recipe: Any, model: Any, batch: Mapping[str, Any]) -> None:
    """Check every key path of a recipe on one probe batch, before training starts.

    ``model_inputs`` must resolve in the batch and name arguments of ``model.forward``;
    the keys of every loss and metric must resolve in ``{"batch", "preds", "step"}`` after
    one forward pass (no gradients, in eval mode). All problems are reported at once, as
    one ConfigError with "did you mean" suggestions.
    """
    import inspect

    import torch

    check_keys({"batch": batch}, [(f"model_inputs.{a}", k) for a, k in recipe.model_inputs.items()])
    params = inspect.signature(model.forward).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    bad = [a for a in recipe.model_inputs if a not in params and not takes_kwargs]
    if bad:
        raise ConfigError(problems=[ConfigProblem(
            f"model_inputs.{a}",
            f"{type(model).__name__}.forward has no argument '{a}'; it takes: "
            f"{', '.join(n for n in params if n != 'self')}",
        ) for a in bad])
    was = model.training
    model.eval()
    from stoker.models.outputs import as_preds

    with torch.no_grad():
        out = model(**{a: get_by_key({"batch": batch}, k) for a, k in recipe.model_inputs.items()})
    model.train(was)
    preds = as_preds(out, getattr(recipe, "model_outputs", None))
    context = {"batch": batch, "preds": preds, "step": 0}
    wanted = []
    for section in ("losses", "metrics"):
        for name, node in getattr(recipe, section).items():
            for arg, key in _key_args(node).items():
                wanted.append((f"{section}.{name}.{arg}", key))
    try:
        check_keys(context, wanted)
    except ConfigError as exc:  # say what the forward returned, for a preds.* key
        from stoker.models.outputs import describe_output

        returned = (f" ({type(model).__name__}.forward returned {describe_output(out)}; "
                    "a tensor is preds.logits, a tuple is named by model_outputs)")
        raise ConfigError(problems=[
            ConfigProblem(p.path, p.message + returned) if "'preds" in p.message else p
            for p in exc.problems]) from None


def _key_args(node: Any) -> dict[str, str]:
    """Arguments of a loss/metric node that hold key paths (``preds.x``/``batch.y``)."""
    if not isinstance(node, Mapping):
        return {}
    return {
        k: v for k, v in node.items()
        if not k.startswith("_") and isinstance(v, str) and v.split(".")[0].split("[")[0]
        in PREFIXES
    }
