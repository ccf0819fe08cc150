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

__all__ = ["MissingKey", "available_keys", "check_keys", "get_by_key"]

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


def key_fields(obj: Any) -> dict[str, str]:
    """The ``name -> key path`` fields of a loss or metric (its ``keys`` attribute)."""
    return dict(getattr(obj, "keys", {}) or {})
