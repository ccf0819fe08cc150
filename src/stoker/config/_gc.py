"""Pause Python's cyclic garbage collector during config work.

Config work runs right after ``import torch`` (and omegaconf, pydantic, rich), when the
heap holds a few hundred thousand long-lived objects. The imports and the tree building
that follow allocate enough to trigger a full (generation 2) collection, and each one
re-scans torch's whole heap: about 70 ms of CPU for nothing, since config work makes
little cyclic garbage. Pausing the collector for the duration of a config operation
(compose, validate, the dry-run table) skips those scans; reference counting still frees
everything else, and the collector is switched back on afterwards. Never used around user
code (building targets, training).
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
    import os
    if not gc.isenabled() or os.environ.get("XX_NOPAUSE"):
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
