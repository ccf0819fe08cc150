"""Pause Python's cyclic garbage collector during config work.

Config work runs right after ``import torch`` (and omegaconf, pydantic, rich), when the
heap holds a few hundred thousand long-lived objects. The imports and the tree building
that follow allocate enough to trigger a full (generation 2) collection, and each one
re-scans torch's whole heap: about 70 ms of CPU for nothing, since config work makes
little cyclic garbage. Pausing the collector for the duration of a config operation
(compose, validate, the dry-run table) skips those scans; reference counting still frees
everything else, and the collector is switched back on afterwards. Objects allocated during
the pause (a ``_target_``'s module imported by validation, torch included) are collected
as usual once it ends. Never used around building targets or training.
"""
from __future__ import annotations

import functools
import gc
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (nesting-safe; restores the old state)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def gc_paused(fn: F) -> F:
    """Decorator form of :func:`paused`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paused():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
