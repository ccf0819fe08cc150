"""Which Python callables an archive's config may name, decided without importing anything.

A config node ``{_target_: pkg.mod.Name}`` becomes a call when built, and merely checking
it against the callable's signature imports ``pkg.mod`` (running its top-level code). So an
archive from elsewhere is checked on the strings first: every ``_target_`` must live in
``stoker``, ``torch`` or a module the user named with ``--trust``. Only then is anything validated
or built.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stoker.config.targets import DEFAULT_TRUSTED, untrusted_code
from stoker.errors import ArchiveError

__all__ = ["check_targets"]


def check_targets(tree: Any, trust: Iterable[str] = (), *, source: str = "archive") -> None:
    """Raise :class:`ArchiveError` listing every ``_target_`` outside stoker, torch and
    ``trust`` (the rule of :func:`stoker.config.targets.untrusted_module`), all at once."""
    bad = untrusted_code(tree, trust)
    if bad:
        shown = "\n  ".join(f"{p} = {t}" for p, t, _ in bad)
        mods = " ".join(sorted({"--trust " + m for _, _, m in bad}))
        raise ArchiveError(
            f"{source} names code outside {' and '.join(DEFAULT_TRUSTED)}, which restoring "
            f"would import and run:\n  {shown}\nNothing was imported. If you trust whoever "
            f"made this archive, allow those modules explicitly: {mods}"
        )
