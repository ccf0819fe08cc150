"""Resolvers stoker adds to OmegaConf.

``${oc.env:VAR}`` / ``${oc.env:VAR,default}`` and references ``${model.dim}`` come with
OmegaConf. ``${art:NAME[:VER],FIELD}`` is an extension point: the artifacts area calls
:func:`set_art_resolver` with a function that looks the artifact up in a registry. Until
then the resolver fails loudly ("no registry configured") instead of returning a stub.
"""
from __future__ import annotations

from typing import Any, Callable

from stoker.errors import ConfigError

ArtResolver = Callable[..., Any]

_DEFAULT: Any = object()  # not chosen yet: the artifacts registry is installed on first use
_art_fn: Any = _DEFAULT
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
    global _art_fn
    if _art_fn is _DEFAULT:
        # The default is the process's artifact registry ($STOKER_HOME/registry unless
        # stoker.init chose another); set_art_resolver(None) turns references off.
        from stoker.artifacts.resolver import resolve_art

        _art_fn = resolve_art
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
