"""Python-first configs that are plain trees: ``Config``, ``Partial`` and ``cfg.ref``.

``Config(torch.optim.AdamW, lr=1e-3)`` is exactly the tree ``{_target_: torch.optim.AdamW,
lr: 0.001}``; ``Partial`` adds ``_partial_: true``. ``cfg.ref.model.dim`` is the string
``${model.dim}``: an OmegaConf interpolation, so the link survives export and reload
(Kauldron serialises references by value and loses them; stoker does not).
"""
from __future__ import annotations

import dataclasses
import enum
import os
from typing import Any

from stoker.config.targets import target_name
from stoker.errors import ConfigError


class Ref(str):
    """A reference to another node, spelled as the interpolation ``${path}``.

    Attribute and item access extend the path: ``cfg.ref.model.dim`` -> ``${model.dim}``.
    For keys that clash with ``str`` methods (``count``, ``index``...) use ``cfg.ref["count"]``.
    """

    __slots__ = ("_path",)

    def __new__(cls, path: str) -> "Ref":
        obj = super().__new__(cls, "${" + path + "}")
        obj._path = path
        return obj

    def __getattr__(self, name: str) -> "Ref":
        if name.startswith("__"):
            raise AttributeError(name)
        return Ref(f"{self._path}.{name}" if self._path else name)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):  # cfg.ref.layers["0"] -> ${layers.0}
            return Ref(f"{self._path}.{key}" if self._path else key)
        return str.__str__(self)[key]  # plain string indexing (OmegaConf's parser slices)

    @property
    def path(self) -> str:
        return self._path


class _RefRoot:
    """``cfg.ref``: the root of references into a config."""

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        return Ref(name)

    def __getitem__(self, key: str) -> Ref:
        return Ref(str(key))


def ref(path: str) -> Ref:
    """``ref("model.dim")`` is ``${model.dim}``: the same as ``cfg.ref.model.dim``."""
    return Ref(path)


def to_data(value: Any) -> Any:
    """Turn Python values into plain config data (what YAML/TOML/JSON can hold)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, Ref):
        return str.__str__(value)
    if isinstance(value, (DictConfig, ListConfig)):
        return value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"_target_": target_name(type(value))}
        for f in dataclasses.fields(value):
            out[f.name] = to_data(getattr(value, f.name))
        return out
    if hasattr(value, "model_dump") and hasattr(type(value), "model_fields"):
        out = {"_target_": target_name(type(value))}
        for name in type(value).model_fields:
            out[name] = to_data(getattr(value, name))
        return out
    mock = getattr(value, "__stoker_target__", None)  # konfig builder used without a call
    if isinstance(mock, str):
        return {"_target_": mock, "_partial_": True}
    if callable(value):
        try:
            return {"_target_": target_name(value), "_partial_": True}
        except ConfigError:
            pass
    del OmegaConf
    raise ConfigError(
        f"cannot put a {type(value).__name__} ({value!r:.60}) in a config: configs hold plain "
        "data (numbers, strings, lists, mappings) and Config(...) nodes")


def _make(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any], partial: bool):
    name = getattr(target, "__stoker_target__", None) or target_name(target)
    content: dict[str, Any] = {"_target_": name}
    if partial:
        content["_partial_"] = True
    if args:
        content["_args_"] = [to_data(a) for a in args]
    for k, v in kwargs.items():
        content[k] = to_data(v)
    return ConfigDict(content)


class _ConfigOf:
    """Marker in ``Annotated[...]``: the parameter receives the unbuilt config of ``cls``."""

    def __init__(self, cls: Any):
        self.cls = cls

    def __repr__(self) -> str:
        return f"Config[{getattr(self.cls, '__name__', self.cls)}]"


class Config:
    """``Config(target, *args, **kwargs)`` -> the config tree of the call ``target(...)``.

    ``target`` is a class/function or its dotted path. Nothing is imported or called until
    ``stoker.build``. ``Config[Model]`` in an entrypoint's annotation means "receive the
    unbuilt config of a Model".
    """

    def __new__(cls, target: Any, /, *args: Any, **kwargs: Any):  # type: ignore[misc]
        return _make(target, args, kwargs, partial=False)

    def __class_getitem__(cls, item: Any) -> Any:
        from typing import Annotated

        return Annotated[Any, _ConfigOf(item)]


class Partial(Config):
    """``Partial(target, **kwargs)`` builds to ``functools.partial(target, **kwargs)``."""

    def __new__(cls, target: Any, /, *args: Any, **kwargs: Any):  # type: ignore[misc]
        return _make(target, args, kwargs, partial=True)


def _config_dict_class():
    from omegaconf import DictConfig

    class _ConfigDict(DictConfig):
        """A DictConfig with ``.ref`` (Kauldron-style references as interpolations)."""

        @property
        def ref(self) -> _RefRoot:
            return _RefRoot()

        def __setattr__(self, key: str, value: Any) -> None:
            super().__setattr__(key, to_data(value))

        def __setitem__(self, key: Any, value: Any) -> None:
            super().__setitem__(key, to_data(value))

    _ConfigDict.__name__ = "ConfigDict"
    _ConfigDict.__qualname__ = "ConfigDict"
    return _ConfigDict


_CD: Any = None


def ConfigDict(content: Any = None, **kwargs: Any):  # noqa: N802 - reads like a class
    """An empty (or given) config tree whose ``.ref`` makes references: ``cfg.ref.a.b``."""
    global _CD
    from stoker.config import resolvers

    resolvers.ensure_registered()
    if _CD is None:
        _CD = _config_dict_class()
    data = to_data(dict(content or {}, **kwargs))
    return _CD(data)
