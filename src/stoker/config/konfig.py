"""Kauldron-style Python configs: imports inside ``konfig.imports()`` build config nodes.

    from stoker import konfig

    with konfig.imports():
        import torch

    cfg = konfig.ConfigDict()
    cfg.steps = 100
    cfg.optim = torch.optim.AdamW(lr=1e-3)            # {_target_: torch.optim.AdamW, lr: 0.001}
    cfg.sched = torch.optim.lr_scheduler.StepLR(step_size=cfg.ref.steps)   # ${steps}

Unlike Kauldron, ``builtins.__import__`` is never patched. Only imports executed by the
frame that opened the block are affected: modules not yet loaded get a stand-in (no real
import, so no torch start-up cost), and names bound in the block are turned into config
builders when it closes. Other threads and other modules import normally throughout.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Iterator

from stoker.config.nodes import Config, ConfigDict, Partial, ref  # noqa: F401 - re-exported

__all__ = ["imports", "ConfigDict", "Config", "Partial", "ref", "resolve", "Builder"]


class Builder:
    """Stands for ``path`` (a module, class or function); calling it makes a config node."""

    __slots__ = ("__stoker_target__",)

    def __init__(self, path: str):
        object.__setattr__(self, "__stoker_target__", path)

    def __getattr__(self, name: str) -> "Builder":
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Builder(f"{self.__stoker_target__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return Config(self.__stoker_target__, *args, **kwargs)

    def partial(self, *args: Any, **kwargs: Any) -> Any:
        """``torch.optim.AdamW.partial(lr=...)`` -> a ``_partial_: true`` node."""
        return Partial(self.__stoker_target__, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<config builder {self.__stoker_target__}>"


class _StubModule(types.ModuleType):
    """What ``import x`` gives inside the block when x is not loaded yet."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Builder(f"{self.__name__}.{name}")


class _StubLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        m = _StubModule(spec.name)
        m.__path__ = []  # a package, so that `import a.b.c` works
        return m

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, frame: types.FrameType):
        self.frame = frame
        self.created: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not self._from_block():
            return None
        self.created.append(fullname)
        return importlib.machinery.ModuleSpec(fullname, _StubLoader(), is_package=True)

    def _from_block(self) -> bool:
        f = sys._getframe(2)
        while f is not None:
            name = f.f_code.co_filename
            if not (name.startswith("<frozen importlib") or name == __file__):
                return f is self.frame
            f = f.f_back
        return False


def _as_builder(value: Any) -> Any:
    if isinstance(value, (Builder, _StubModule)):
        return Builder(value.__name__) if isinstance(value, _StubModule) else value
    if isinstance(value, types.ModuleType):
        return Builder(value.__name__)
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if callable(value) and module and qualname:
        return Builder(f"{module}.{qualname}")
    return value


@contextlib.contextmanager
def imports() -> Iterator[None]:
    """Imports in this block give config builders instead of modules (see module doc)."""
    frame = sys._getframe(2)  # the frame running the `with` statement
    before = dict(frame.f_locals)
    finder = _Finder(frame)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in finder.created:  # the stand-ins must not shadow real imports later
            if isinstance(sys.modules.get(name), _StubModule):
                del sys.modules[name]
        after = frame.f_locals
        changed = {k: _as_builder(v) for k, v in after.items()
                   if k not in before or before[k] is not v}
        changed = {k: v for k, v in changed.items() if v is not after.get(k)}
        if changed:
            _write_frame_locals(frame, changed)
        del frame


def _write_frame_locals(frame: types.FrameType, values: dict[str, Any]) -> None:
    if frame.f_locals is frame.f_globals:  # module level (the usual case for configs)
        frame.f_globals.update(values)
        return
    frame.f_locals.update(values)  # 3.13+: a write-through proxy
    if sys.version_info < (3, 13):
        import ctypes

        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def resolve(cfg: Any, **kwargs: Any) -> Any:
    """Kauldron's name for :func:`stoker.build`."""
    from stoker.config.instantiate import build

    return build(cfg, **kwargs)
