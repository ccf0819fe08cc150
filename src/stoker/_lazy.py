"""Lazy package attributes (PEP 562), shared by every package that exposes names lazily.

``import stoker`` and ``stoker --help`` must not import torch, omegaconf or the executors;
a package maps each public name to the module that defines it and imports that module only
when the name is first used. Standard library only, so any layer may use it.
"""
from __future__ import annotations

import importlib
import sys
TYPE_CHECKING = False  # annotations only: `import stoker` imports neither typing nor
if TYPE_CHECKING:      # collections (the job wrapper starts the job before anything else)
    from collections.abc import Callable, Mapping
    from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` serving ``names`` (public name -> module).

    The value is the module's attribute of that name, or the module itself when it has none
    (``konfig`` -> ``stoker.config.konfig``); it is cached on the package, so the lookup runs
    once per name.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(module)
        value = getattr(mod, name) if hasattr(mod, name) else mod  # a function beats its module
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
