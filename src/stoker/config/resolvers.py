"""Resolvers stoker adds to OmegaConf.

``${oc.env:VAR}`` / ``${oc.env:VAR,default}`` and references ``${model.dim}`` come with
OmegaConf. ``${art:NAME[:VER],FIELD}`` is an extension point: the config layer knows no
registry, so the artifacts layer installs the function that looks an artifact up
(:func:`stoker.artifacts.resolver.install`, called by ``stoker.init``, the command-line
front doors, and when the :mod:`stoker.artifacts` package loads). Until then the resolver
fails loudly ("no registry configured", naming ``stoker.init()``) instead of returning a stub.
"""
from __future__ import annotations

from typing import Any, Callable

from stoker.errors import ConfigError

ArtResolver = Callable[..., Any]

_art_fn: ArtResolver | None = None
_registered = False


def set_art_resolver(fn: ArtResolver | None) -> ArtResolver | None:
    """Install (or with None remove) the function behind ``${art:NAME[:VER],FIELD}``.

    ``fn("NAME[:VER]", "FIELD")`` returns the field's value. Returns the previous function
    so that callers (and tests) can restore it.
    """
    global _art_fn
    previous, _art_fn = _art_fn, fn
    ensure_registered()
    return previous


def get_art_resolver() -> ArtResolver | None:
    """The installed function behind ``${art:...}``, or None."""
    return _art_fn


def _art(name: Any = None, field: Any = "path") -> Any:
    if name is None or str(name).strip() == "":
        raise ConfigError("${art:...} needs an artifact name, e.g. ${art:my-data,path}")
    fn = get_art_resolver()
    if fn is None:
        raise ConfigError(
            f"cannot resolve ${{art:{name},{field}}}: no registry configured. "
            "Initialise one with `stoker.init(...)` (or stoker.config.resolvers."
            "set_art_resolver) before resolving artifact references.")
    return fn(str(name), str(field))


def ensure_registered() -> None:
    """Register stoker's resolvers with OmegaConf once per process."""
    global _registered
    if _registered:
        return
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("art"):
        # Not cached: the registry may change between resolutions (new versions, `latest`).
        OmegaConf.register_new_resolver("art", _art, use_cache=False)
    _registered = True
