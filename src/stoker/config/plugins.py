"""Loading the user's code before a config is validated: ``imports:``, ``--import``, plugins.

A recipe that names a user's model architecture, dataset, loss or callback can only be
validated once the module that defines (and registers) it has been imported. Three ways in:

* ``imports: [my_pkg.models, my_pkg.data]`` at the top of a config;
* ``--import MODULE`` (repeatable) on any command that reads a config;
* installed packages that declare an entry point in the ``stoker.plugins`` group
  (``[project.entry-points."stoker.plugins"] my_pkg = "my_pkg.models"``); the module is
  imported, and a ``module:function`` entry point's function is called with no arguments.

Modules named in ``imports:``/``--import`` are looked up on ``sys.path`` and then in the
current directory, so ``stoker train conf/config.yaml`` works from a project's root without
installing it (as ``python -m`` would). A failure names the module and why (exit 2, no
traceback): not found, or what it raised and where.

Nothing here runs for ``stoker --help``: commands call it when they read a config.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

from stoker.errors import ConfigError, ConfigProblem

__all__ = ["ENTRY_POINT_GROUP", "imported_modules", "import_modules", "load_plugins",
           "load_user_code"]

ENTRY_POINT_GROUP = "stoker.plugins"

_IMPORTED: list[str] = []  # what this process imported for the user, in order (for messages)
_PLUGINS_LOADED = False


def imported_modules() -> list[str]:
    """Modules imported by :func:`import_modules` and :func:`load_plugins` so far."""
    return list(_IMPORTED)


def _where_raised(exc: BaseException) -> str:
    """``file.py:12`` of the innermost frame of the user's code that raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "importlib" not in frame.filename and "/stoker/config/" not in frame.filename:
            return f" ({os.path.relpath(frame.filename) if not frame.filename.startswith('<') else frame.filename}:{frame.lineno})"
    return ""


def add_project_dir() -> str:
    """Put the current directory on ``sys.path`` (after installed packages), as ``python -m``
    does, so a project's own modules import from its root; returns that directory."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
        importlib.invalidate_caches()
    return cwd


def _import_one(name: str, where: str) -> ConfigProblem | None:
    if not isinstance(name, str) or not name.strip() or any(
            not p.isidentifier() for p in name.strip().split(".")):
        return ConfigProblem(where, f"{name!r} is not a module name like 'my_pkg.models'")
    name = name.strip()
    if name in sys.modules:
        if name not in _IMPORTED:
            _IMPORTED.append(name)
        return None
    cwd = add_project_dir()
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if name == missing or name.startswith(missing + "."):
            reason = (f"no module named '{missing}' (looked on sys.path and in {cwd}); install "
                      "the package, run from its directory, or add its directory to PYTHONPATH")
        else:
            reason = f"it imports '{missing}', which is not installed"
        return ConfigProblem(where, f"cannot import module '{name}': {reason}")
    except ConfigError as exc:  # e.g. register_model with a bad config class
        return ConfigProblem(where, f"importing module '{name}' failed{_where_raised(exc)}: "
                             f"{exc}")
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises is reported
        return ConfigProblem(where, f"importing module '{name}' raised {type(exc).__name__}"
                             f"{_where_raised(exc)}: {exc}")
    _IMPORTED.append(name)
    return None


def import_modules(names: Iterable[Any], *, where: str = "imports") -> list[str]:
    """Import each module (raising one ConfigError that lists every failure)."""
    problems = []
    done = []
    for i, name in enumerate(names):
        problem = _import_one(name, f"{where}[{i}]" if where == "imports" else where)
        if problem is None:
            done.append(str(name).strip())
        else:
            problems.append(problem)
    if problems:
        raise ConfigError(problems=problems)
    return done


def load_plugins() -> list[str]:
    """Import the ``stoker.plugins`` entry points of installed packages (once a process)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED or os.environ.get("STOKER_NO_PLUGINS"):
        return []
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    problems = []
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point '{ep.name} = {ep.value}' ({ENTRY_POINT_GROUP}"
        dist = getattr(getattr(ep, "dist", None), "name", None)
        where += f", package {dist})" if dist else ")"
        try:
            obj = ep.load()
            if ep.attr and callable(obj):
                obj()
        except Exception as exc:  # noqa: BLE001 - an installed plugin that fails is named
            problems.append(ConfigProblem(
                where, f"loading it raised {type(exc).__name__}{_where_raised(exc)}: {exc}; "
                "fix or uninstall the package, or set STOKER_NO_PLUGINS=1 to skip plugins"))
            continue
        if ep.module not in _IMPORTED:
            _IMPORTED.append(ep.module)
        loaded.append(ep.module)
    if problems:
        raise ConfigError(problems=problems)
    return loaded


def load_user_code(imports: Any = None, extra: Sequence[str] = ()) -> list[str]:
    """Plugins, then ``--import`` modules, then a config's ``imports:`` list.

    ``imports`` is the config's value (a list of module names, a single name, or None).
    """
    load_plugins()
    out = import_modules(list(extra), where="--import") if extra else []
    if imports is None:
        return out
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, (list, tuple)):
        raise ConfigError(problems=[ConfigProblem(
            "imports", f"expected a list of module names, got {imports!r}")])
    return out + import_modules(imports)
