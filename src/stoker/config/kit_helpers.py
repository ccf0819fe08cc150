"""Helpers with the names users of the Nemotron kit know, built on stoker.config.

The kit's ``cli(Config, config_file=...)`` reads the command line and exits on a mistake,
so it lives with the command line (:mod:`stoker.cli.kit_cli`); everything here returns
values or raises ConfigError.

Differences that fix the kit's weaknesses: TOML and JSON load too, ``Path`` fields,
nested dataclasses and ``from __future__ import annotations`` convert, and an override
of a key that does not exist is an error with a suggestion, never silently dropped.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence, TypeVar

from stoker.config.argv import ArgvSpec, parse_argv
from stoker.errors import ConfigError

T = TypeVar("T")

__all__ = ["ConfigManager", "parse_config_and_overrides", "load_omegaconf_yaml",
           "apply_hydra_overrides", "omegaconf_to_dataclass"]


_KIT_ARGV = ArgvSpec(
    values={"--config": "config", "-c": "config", "--config-file": "config"},
    error=ConfigError,
    unknown=lambda option: f"unknown option {option}; expected --config FILE or key=value overrides",
    needs_value="{option} needs a file path",
    dashed_overrides=True,  # --a.b=1 is accepted as a.b=1
)


def parse_config_and_overrides(argv: Sequence[str] | None = None, *,
                               default_config: str | Path | None = None
                               ) -> tuple[Path | None, list[str]]:
    """Split ``argv`` into the ``--config/-c FILE`` (or ``--config=FILE``) and overrides."""
    found, overrides = parse_argv(sys.argv[1:] if argv is None else argv, _KIT_ARGV)
    if "config" in found:
        return Path(found["config"]), overrides
    return (Path(default_config) if default_config is not None else None), overrides


def load_omegaconf_yaml(path: str | Path):
    """Load a config file (YAML, and also TOML/JSON by extension) into a DictConfig."""
    from stoker.config.files import load

    return load(path)


def apply_hydra_overrides(cfg: Any, overrides: Sequence[str], *, schema: Any = None):
    """A copy of ``cfg`` with Hydra-grammar overrides applied; unknown keys are errors."""
    from stoker.config.composing import compose

    return compose(cfg, overrides, schema=schema)


def omegaconf_to_dataclass(cfg: Any, cls: type[T]) -> T:
    """Validate ``cfg`` against ``cls`` and build it (Path, nested dataclasses, Literal...)."""
    from stoker.config.typed import to_typed

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
        from stoker.config.nodes import to_data
        from stoker.config.export import save
        from stoker.config.files import to_omegaconf

        if not hasattr(cfg, "_get_node"):
            cfg = to_omegaconf(to_data(cfg))
        return save(cfg, path)
