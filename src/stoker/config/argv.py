"""Command-line arguments of a config-driven script: options, a config file, overrides.

One parser for both front doors that read ``sys.argv`` themselves: the kit's
``parse_config_and_overrides`` (``--config FILE`` plus ``key=value``; ``--a.b=1`` is read
as ``a.b=1``) and ``@stoker.entrypoint`` scripts (flags such as ``--dryrun``, a positional
config file, no dashed overrides). An :class:`ArgvSpec` says which options exist and how
mistakes are worded, so each keeps its own messages and error type.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


@dataclass(frozen=True)
class ArgvSpec:
    values: Mapping[str, str]  #: option that takes a value -> field (``"-c": "config"``)
    error: Callable[[str], Exception]  #: the exception a mistake raises
    unknown: Callable[[str], str]  #: the message for an unknown option
    needs_value: str = "{option} needs a value"  #: the message when a value is missing
    flags: Mapping[str, str] = field(default_factory=dict)  #: option without a value -> field
    #: a bare word with one of these suffixes (``@`` prefix allowed) sets ``config``; any
    #: other bare word is an error. None: bare words are overrides.
    config_suffixes: tuple[str, ...] | None = None
    dashed_overrides: bool = False  #: ``--a.b=1`` is the override ``a.b=1``


def parse_argv(argv: Sequence[str], spec: ArgvSpec) -> tuple[dict[str, Any], list[str]]:
    """``(fields set by options, overrides in order)``; raises ``spec.error`` on a mistake."""
    found: dict[str, Any] = {}
    overrides: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in spec.flags:
            found[spec.flags[a]] = True
        elif a in spec.values:
            if i + 1 >= len(args):
                raise spec.error(spec.needs_value.format(option=a))
            found[spec.values[a]] = args[i + 1]
            i += 1
        elif a.startswith("--") and "=" in a and a.split("=", 1)[0] in spec.values:
            opt, value = a.split("=", 1)
            found[spec.values[opt]] = value
        elif a.startswith("-") and not a.startswith("--") and len(a) > 1 and "=" not in a:
            raise spec.error(spec.unknown(a))
        elif a.startswith("--") and ("=" not in a or not spec.dashed_overrides):
            raise spec.error(spec.unknown(a.split("=", 1)[0]))
        elif a.startswith("--"):
            overrides.append(a[2:])
        elif spec.config_suffixes is not None and "=" not in a and not a.startswith("~"):
            path = a[1:] if a.startswith("@") else a
            if Path(path).suffix.lower() not in spec.config_suffixes:
                raise spec.error(f"unexpected argument '{a}': arguments are key=value "
                                 "(e.g. epochs=5), a config file, or options; see --help")
            if found.get("config"):
                raise spec.error(f"two config files given ({found['config']} and {path}); give one")
            found["config"] = path
        else:
            overrides.append(a)
        i += 1
    return found, overrides
