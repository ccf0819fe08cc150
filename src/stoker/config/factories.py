"""Named factories: functions selectable from the command line as ``model=my_model``.

``@stoker.factory`` registers a function under its name (or ``name=``). On an override
``key=NAME`` the factory replaces the node at ``key``:

* a factory annotated to return a config (``Config``/``dict``) or a dataclass / Pydantic
  model is called at compose time and its tree is inlined, so ``model.size=3`` can follow;
* any other factory becomes ``{_target_: module.factory}``: it is called by ``build`` and
  further overrides are its arguments.

Registration is per process (like imports); :func:`scoped` gives tests an isolated registry.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from stoker.errors import ConfigError


@dataclass(frozen=True)
class FactoryInfo:
    name: str
    fn: Callable[..., Any]
    module: str
    line: int | None
    returns: Any  # the return annotation (a type) or None
    for_key: str | None  # only selectable at this key / parameter name when set

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.fn.__qualname__}"

    def inlines(self) -> bool:
        """True when calling the factory yields a config tree (safe at compose time)."""
        r = self.returns
        if r is None:
            return False
        origin = typing.get_origin(r) or r
        if getattr(r, "__metadata__", None):  # Config[X] -> Annotated[Any, _ConfigOf]
            return True
        if origin in (dict, typing.Dict):
            return True
        if inspect.isclass(origin):
            if dataclasses.is_dataclass(origin) or hasattr(origin, "model_fields"):
                return True
            return origin.__name__ in ("DictConfig", "ConfigDict", "Config", "Partial")
        return False


_REGISTRY: dict[str, list[FactoryInfo]] = {}


def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn, include_extras=True).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation just means "don't inline"
        ann = getattr(fn, "__annotations__", {}).get("return")
        return None if isinstance(ann, str) else ann


def factory(fn: Callable[..., Any] | None = None, *, name: str | None = None,
            target_arg: str | None = None) -> Any:
    """Register ``fn`` as a named factory (``@factory`` or ``@factory(name=..., target_arg=...)``)."""

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        try:
            line = inspect.getsourcelines(f)[1]
        except (OSError, TypeError):
            line = None
        info = FactoryInfo(
            name=name or f.__name__, fn=f, module=getattr(f, "__module__", "?"), line=line,
            returns=_return_type(f), for_key=target_arg,
        )
        entries = _REGISTRY.setdefault(info.name, [])
        entries[:] = [e for e in entries if e.qualname != info.qualname] + [info]
        return f

    return register(fn) if fn is not None else register


def all_factories() -> list[FactoryInfo]:
    return [e for entries in _REGISTRY.values() for e in entries]


def _compatible(info: FactoryInfo, key: str | None, expected: Any) -> bool:
    if info.for_key is not None and key is not None and info.for_key != key.rsplit(".", 1)[-1]:
        return False
    if expected is None or info.returns is None:
        return True
    ret = typing.get_origin(info.returns) or info.returns
    exp = typing.get_origin(expected) or expected
    if exp is typing.Union or str(exp) in ("types.UnionType",):
        return any(_compatible(info, key, a) for a in typing.get_args(expected))
    if inspect.isclass(ret) and inspect.isclass(exp):
        try:
            return issubclass(ret, exp)
        except TypeError:
            return True
    return True


def factories_for(key: str | None = None, expected: Any = None) -> list[FactoryInfo]:
    """Factories selectable at ``key`` whose return type fits ``expected`` (if known)."""
    return [e for e in all_factories() if _compatible(e, key, expected)]


def lookup(name: str, key: str | None = None, expected: Any = None) -> FactoryInfo | None:
    for info in reversed(_REGISTRY.get(name, [])):
        if _compatible(info, key, expected):
            return info
    return None


def node_for(info: FactoryInfo) -> Any:
    """The config tree that selecting ``info`` puts in the config."""
    from stoker.config.nodes import to_data

    if info.inlines():
        try:
            result = info.fn()
        except TypeError as e:
            raise ConfigError(f"factory '{info.name}' ({info.qualname}) cannot be called "
                              f"without arguments: {e}") from None
        return to_data(result)
    return {"_target_": info.qualname}


@contextlib.contextmanager
def scoped() -> Iterator[None]:
    """Run with an empty factory registry and restore the previous one afterwards."""
    saved = {k: list(v) for k, v in _REGISTRY.items()}
    _REGISTRY.clear()
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(saved)
