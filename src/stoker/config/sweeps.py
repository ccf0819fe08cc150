"""Sweeps: Hydra's multirun grammar expanded into the points of a cartesian product.

``optim.lr=1e-3,3e-3 seed=range(1,3)`` gives four points, each a plain list of overrides
(``optim.lr=0.001 seed=1`` ...) that composes like any single run. Hydra's own override
parser decides what a sweep is and enumerates it (``a,b``, ``choice(...)``, ``range(...)``,
``glob(...)`` over config-group files and registered factories); ``interval(...)`` and other
continuous sweeps need an optimiser and are refused. Overrides that are not sweeps pass
through untouched (stoker's ``key=@file`` and ``key=option`` included).

What runs each point (an experiment with one task per point) is the launch layer's job;
this module only says which points there are.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from stoker.config.fastpaths import plain_override
from stoker.errors import ConfigError, ConfigProblem

__all__ = ["SweepPoint", "expand_sweep", "group_options", "is_sweep"]

CLI = "command line"
_FILE_RE = re.compile(r"^\+{0,2}[A-Za-z_][\w.\-/]*=@")


@dataclass
class SweepPoint:
    """One point of a sweep: its index, the overrides that compose it, and the swept values."""

    index: int
    overrides: list[str]
    values: dict[str, str] = field(default_factory=dict)
    """Swept key -> value as written in the point's override (``optim.lr`` -> ``0.001``)."""

    @property
    def label(self) -> str:
        """``optim.lr=0.001,seed=1``: the point's task name."""
        return ",".join(f"{k}={v}" for k, v in self.values.items())

    def dir_name(self, limit: int = 60) -> str:
        """A folder name that can be typed back as an override value: ``0_optim.lr-0.001_seed-1``
        (no ``=`` or ``,``, which the override grammar would read as a sweep)."""
        def clean(text: str) -> str:
            return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")

        body = "_".join(f"{clean(k)}-{clean(v)}" for k, v in self.values.items())
        return f"{self.index}_{body}" if body and len(body) <= limit else str(self.index)


def _parse(text: str) -> Any:
    """Hydra's parsed override, or None when it is not one Hydra reads (``key=@file``, a
    plain form, or garbage that composing will report with its own message)."""
    if not isinstance(text, str) or _FILE_RE.match(text.strip()) or plain_override(text):
        return None
    from hydra.errors import HydraException

    from stoker.config.overrides import _override_parser

    try:
        return _override_parser().parse_override(text)
    except HydraException:
        return None
    except Exception:  # noqa: BLE001 - the ANTLR runtime raises assorted errors; composing reports them
        return None


def is_sweep(text: str) -> bool:
    """True when ``text`` is a sweep override (several values)."""
    o = _parse(text)
    return o is not None and o.is_sweep_override()


def group_options(key: str, search_dirs: Sequence[Path | str] = (), schema: Any = None
                  ) -> list[str]:
    """What ``key=NAME`` can select: config-group files under ``search_dirs`` and factories
    registered for that key (``glob(...)`` sweeps over these)."""
    from stoker.config import factories
    from stoker.config.overrides import _options, schema_at

    expected = schema_at(schema, key.split(".")) if schema is not None else None
    names = set(_options(key, [Path(d) for d in search_dirs]))
    names |= {f.name for f in factories.factories_for(key, expected)}
    return sorted(names)


class _Options:
    """What Hydra's glob sweep asks for (``get_group_options``), from stoker's groups."""

    def __init__(self, options: Callable[[str], list[str]]):
        self._options = options

    def get_group_options(self, group: str, results_filter: Any = None) -> list[str]:
        return self._options(group.replace("/", "."))


def expand_sweep(overrides: Sequence[str], *,
                 options: Callable[[str], list[str]] | None = None) -> list[SweepPoint]:
    """The points of the sweep that ``overrides`` describe (one point when none sweeps).

    ``options(key)`` lists the names ``glob(...)`` may match at ``key`` (see
    :func:`group_options`). Raises ConfigError for sweeps that cannot be enumerated
    (``interval(...)``) or that select nothing, naming the override.
    """
    axes: list[list[tuple[int, str, str]]] = []  # per sweep: (position, key, value)
    problems: list[ConfigProblem] = []
    texts = list(overrides)
    for pos, text in enumerate(texts):
        o = _parse(text)
        if o is None or not o.is_sweep_override():
            continue
        key = o.get_key_element()
        if not o.is_discrete_sweep():
            problems.append(ConfigProblem(o.key_or_group, f"'{text}' is a continuous sweep; "
                            "stoker runs grids: list values (a,b), choice(...), range(...) or "
                            "glob(...)", CLI))
            continue
        if type(o._value).__name__ == "Glob":
            o.config_loader = _Options(options or (lambda _k: []))
        try:
            values = list(o.sweep_string_iterator())
        except Exception as e:  # noqa: BLE001 - Hydra raises assorted errors enumerating
            problems.append(ConfigProblem(o.key_or_group, f"cannot enumerate '{text}': {e}", CLI))
            continue
        if not values:
            have = options(o.key_or_group.replace("/", ".")) if options else []
            listing = ", ".join(have) if have else "none"
            problems.append(ConfigProblem(o.key_or_group, f"'{text}' selects no value (the "
                            f"options at '{o.key_or_group}': {listing})", CLI))
            continue
        axes.append([(pos, key, v) for v in values])
    if problems:
        raise ConfigError(problems=problems)
    points = []
    for i, combo in enumerate(itertools.product(*axes)):
        chosen = {pos: (key, value) for pos, key, value in combo}
        point = [f"{chosen[p][0]}={chosen[p][1]}" if p in chosen else t
                 for p, t in enumerate(texts)]
        swept = {key.lstrip("+~"): value for _, key, value in combo}
        points.append(SweepPoint(i, point, swept))
    return points
