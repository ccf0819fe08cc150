"""The Nemotron kit's ``cli(Config, config_file=...)``: a script's config from its command line.

It belongs to the command line because it reads ``sys.argv``, prints help and exits with a
code on a mistake; the loading, overriding and typing underneath are the config layer's
(:class:`stoker.config.kit_helpers.ConfigManager`). Reached as ``stoker.cli(...)``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence, TypeVar

from stoker.errors import ConfigError

T = TypeVar("T")

__all__ = ["cli"]


def cli(schema: type[T], config_file: str | Path | None = None, *,
        argv: Sequence[str] | None = None, exit_on_error: bool = True) -> T:
    """The config of a script: ``config_file`` (or ``--config FILE``) plus ``key=value``
    overrides from the command line, as a validated ``schema`` instance.

    A mistake prints a clear message and exits with code 2 (``exit_on_error=False``
    raises ConfigError instead, for library use and tests).
    """
    from stoker.cli.front_door import enable_artifact_references
    from stoker.config.kit_helpers import ConfigManager

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if any(a in ("-h", "--help") for a in args):
            _print_help(schema, config_file)
            raise SystemExit(0)
        enable_artifact_references()
        return ConfigManager(schema, default_config=config_file).parse(args)
    except ConfigError as e:
        if not exit_on_error:
            raise
        from stoker.cli.app import report_exception

        raise SystemExit(report_exception(e)) from None


def _print_help(schema: Any, config_file: Any) -> None:
    from stoker.config import schema as sch

    lines = [f"usage: {Path(sys.argv[0]).name} [--config FILE] [key=value ...]", ""]
    if config_file:
        lines.append(f"default config: {config_file}")
    lines.append(f"fields of {getattr(schema, '__name__', schema)}:")
    for name, f in (sch.fields_of(schema) or {}).items():
        default = "required" if f.required else repr(sch.default_value(f))
        lines.append(f"  {name:<24} {sch.type_name(f.type):<20} {default}")
    sys.stdout.write("\n".join(lines) + "\n")
