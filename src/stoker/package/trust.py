"""Which Python callables an archive's config may build, decided before anything is built.

A config node ``{_target_: pkg.mod.Name}`` becomes a call when built, and a dotted name can
reach anything its module imported (``stoker.launch.executors.process.os.system``). So an
archive from elsewhere is checked first, every ``_target_`` at once, by the one trust rule
(:func:`stoker.config.targets.judge_target`): nothing outside ``stoker``, ``torch`` and
``--trust`` is imported, and each target is judged on what it resolves to, against the
allowlist of what an archive may build. Only then is anything validated or built.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stoker.config.targets import describe_untrusted, untrusted_code
from stoker.errors import ArchiveError

__all__ = ["check_targets"]


def check_targets(tree: Any, trust: Iterable[str] = (), *, source: str = "archive") -> None:
    """Raise :class:`ArchiveError` listing every ``_target_`` (and ``imports:`` module) the
    trust rule refuses, each with its config path, all at once."""
    bad = untrusted_code(tree, trust)
    if bad:
        raise ArchiveError(describe_untrusted(bad, source))
