"""Which Python callables an archive's config may name, decided without importing anything.

A config node ``{_target_: pkg.mod.Name}`` becomes a call when built, and merely checking
it against the callable's signature imports ``pkg.mod`` (running its top-level code). So an
archive from elsewhere is checked on the strings first: every ``_target_`` must live in
``stoker`` or in a module the user named with ``--trust``. Only then is anything validated
or built.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from stoker.errors import ArchiveError

__all__ = ["check_targets", "targets"]

_ALWAYS = ("stoker",)


def targets(tree: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(dotted path, target string)`` in a plain config tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield sub, str(value)
            else:
                yield from targets(value, sub)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from targets(value, f"{path}[{i}]")


def _module(target: str) -> str:
    mod, sep, _ = target.partition(":")
    return mod if sep else target.rpartition(".")[0] or target


def _allowed(module: str, trusted: Iterable[str]) -> bool:
    return any(module == t or module.startswith(t + ".") for t in (*_ALWAYS, *trusted))


def check_targets(tree: Any, trust: Iterable[str] = (), *, source: str = "archive") -> None:
    """Raise :class:`ArchiveError` listing every ``_target_`` outside stoker and ``trust``."""
    trusted = [t.strip() for t in trust if t and t.strip()]
    bad = [(p, t) for p, t in targets(tree) if not _allowed(_module(t), trusted)]
    if bad:
        shown = "\n  ".join(f"{p} = {t}" for p, t in bad)
        mods = " ".join(sorted({"--trust " + _module(t).split(".")[0] for _, t in bad}))
        raise ArchiveError(
            f"{source} names code outside stoker, which restoring would import and run:\n  "
            f"{shown}\nNothing was imported. If you trust whoever made this archive, allow "
            f"those modules explicitly: {mods}"
        )
