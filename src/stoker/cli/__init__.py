"""stoker.cli: the ``stoker`` command line.

``stoker.cli(Config, ...)`` is also the kit's config-from-command-line helper
(:func:`stoker.cli.kit_cli.cli`). Python rebinds ``stoker.cli`` to this package as soon as
any ``stoker.cli.*`` module is imported, which would hide that function; so the package
itself is callable and forwards to it, and ``stoker.cli(...)`` works either way.
"""
from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from stoker.cli.kit_cli import cli

        return cli(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
