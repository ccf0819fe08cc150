"""stoker.config: one config tree (OmegaConf), one way from config to objects (``build``).

Load YAML/TOML/JSON with file:line tracking, compose with Hydra defaults lists and
overrides, resolve ``${oc.env:..}``/``${art:..}``/references, validate against target
signatures and schemas (every problem at once), build, and export back to any format.

Names resolve lazily so that importing :mod:`stoker.config` costs nothing until used.
"""
from __future__ import annotations

from stoker._lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "load": "stoker.config.files",
    "loads": "stoker.config.files",
    "source_of": "stoker.config.files",
    "compose": "stoker.config.composing",
    "apply_overrides": "stoker.config.overrides",
    "validate": "stoker.config.validation",
    "to_typed": "stoker.config.typed",
    "build": "stoker.config.instantiate",
    "save": "stoker.config.export",
    "dumps": "stoker.config.export",
    "to_container": "stoker.config.export",
    "to_record": "stoker.config.export",
    "Config": "stoker.config.nodes",
    "Partial": "stoker.config.nodes",
    "ConfigDict": "stoker.config.nodes",
    "ref": "stoker.config.nodes",
    "factory": "stoker.config.factories",
    "set_art_resolver": "stoker.config.resolvers",
    "konfig": "stoker.config.konfig",
    "recipes": "stoker.config.recipes",
    "resolvers": "stoker.config.resolvers",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
