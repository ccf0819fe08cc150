"""Helpers with the names users of the Nemotron kit know, built on stoker.config.

Differences that fix the kit's weaknesses: TOML and JSON load too, ``Path`` fields,
nested dataclasses and ``from __future__ import annotations`` convert, and an override
of a key that does not exist is an error with a suggestion, never silently dropped.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence, TypeVar

from stoker.errors import ConfigError

T = TypeVar("T")

__all__ = ["cli", "ConfigManager", "parse_config_and_overrides", "load_omegaconf_yaml",
           "apply_hydra_overrides", "omegaconf_to_dataclass"]


def parse_config_and_overrides(argv: Sequence[str] | None = None, *,
                               default_config: str | Path | None = None
                               ) -> tuple[Path | None, list[str]]:
    """Split ``argv`` into the ``--config/-c FILE`` (or ``--config=FILE``) and overrides."""
    args = list(sys.argv[1:] if argv is None else argv)
    config: Path | None = Path(default_config) if default_config is not None else None
    overrides: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--config", "-c", "--config-file"):
            if i + 1 >= len(args):
                raise ConfigError(f"{a} needs a file path")
            config = Path(args[i + 1])
            i += 2
            continue
        if a.startswith("--config=") or a.startswith("--config-file="):
            config = Path(a.split("=", 1)[1])
        elif a.startswith("-") and not a.startswith("--") and "=" not in a and a != "-":
            raise ConfigError(f"unknown option {a}; expected --config FILE or key=value overrides")
        elif a.startswith("--") and "=" not in a:
            raise ConfigError(f"unknown option {a}; expected --config FILE or key=value overrides")
        elif a.startswith("--"):
            overrides.append(a[2:])  # --a.b=1 is accepted as a.b=1
        else:
            overrides.append(a)
        i += 1
    return config, overrides


def load_omegaconf_yaml(path: str | Path):
    """Load a config file (YAML, and also TOML/JSON by extension) into a DictConfig."""
    from stoker.config.sources import load

    return load(path)


def apply_hydra_overrides(cfg: Any, overrides: Sequence[str], *, schema: Any = None):
    """A copy of ``cfg`` with Hydra-grammar overrides applied; unknown keys are errors."""
    from stoker.config.composing import compose

    return compose(cfg, overrides, schema=schema)


def omegaconf_to_dataclass(cfg: Any, cls: type[T]) -> T:
    """Validate ``cfg`` against ``cls`` and build it (Path, nested dataclasses, Literal...)."""
    from stoker.config.validation import to_typed

    return to_typed(cfg, cls)


class ConfigManager:
    """Loads a config (file or recipe), applies overrides, converts and saves it."""

    def __init__(self, schema: Any = None, *, default_config: str | Path | None = None,
                 search_path: Sequence[str | Path] = ()):
        self.schema = schema
        self.default_config = default_config
        self.search_path = list(search_path)

    def load(self, source: Any = None, overrides: Sequence[str] = ()):
        from stoker.config.composing import compose

        return compose(source if source is not None else self.default_config, overrides,
                       search_path=self.search_path, schema=self.schema)

    def parse(self, argv: Sequence[str] | None = None):
        """Config from ``argv`` (``--config FILE`` and overrides), validated and typed."""
        path, overrides = parse_config_and_overrides(argv, default_config=self.default_config)
        cfg = self.load(path, overrides)
        if self.schema is None:
            from stoker.config.validation import validate

            validate(cfg)
            return cfg
        return omegaconf_to_dataclass(cfg, self.schema)

    @staticmethod
    def save(cfg: Any, path: str | Path) -> Path:
        from stoker.config.builders import to_data
        from stoker.config.export import save
        from stoker.config.sources import to_omegaconf

        if not hasattr(cfg, "_get_node"):
            cfg = to_omegaconf(to_data(cfg))
        return save(cfg, path)


def cli(schema: type[T], config_file: str | Path | None = None, *,
        argv: Sequence[str] | None = None, exit_on_error: bool = True) -> T:
    """The config of a script: ``config_file`` (or ``--config FILE``) plus ``key=value``
    overrides from the command line, as a validated ``schema`` instance.

    A mistake prints a clear message and exits with code 2 (``exit_on_error=False``
    raises ConfigError instead, for library use and tests).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if any(a in ("-h", "--help") for a in args):
            _print_help(schema, config_file)
            raise SystemExit(0)
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
