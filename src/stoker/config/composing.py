"""From "what the user named" to one config tree: recipe, file, Python function or config dir.

``compose(source, overrides)`` accepts a built-in recipe name, a YAML/TOML/JSON file, a
file or directory with a Hydra ``defaults:`` list (composed with hydra-core's compose API:
no ``@hydra.main``, no chdir, global Hydra state restored afterwards), a ``.py`` file,
``module:function`` or ``file.py:function`` returning a config, or None for an empty tree.
Interpolations stay unresolved in the result.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from stoker.config._gc import gc_paused
from stoker.config.files import (SUFFIXES, attach_sources, prefixed, read, sources_of,
                                   to_omegaconf)
from stoker.errors import ConfigError

PY_CONFIG_FUNCTIONS = ("get_config", "config")


@gc_paused
def compose(source: Any = None, overrides: Sequence[str] = (), *,
            search_path: Sequence[str | Path] | None = None, schema: Any = None):
    """Compose a config tree from ``source`` and Hydra-grammar ``overrides``.

    ``search_path``: extra directories for config groups (``model=small`` looks for
    ``<dir>/model/small.yaml``) and relative ``@file`` paths; the source file's own
    directory is always searched first. ``schema`` (dataclass / Pydantic model) lets
    overrides set fields the tree does not spell out.
    """
    from stoker.config.overrides import apply_overrides

    overrides = list(overrides or ())
    extra_dirs = [Path(p) for p in (search_path or ())]
    cfg, base_dir, overrides = _from_source(source, overrides, extra_dirs)
    dirs = ([base_dir] if base_dir else []) + extra_dirs + [Path.cwd()]
    if overrides:
        apply_overrides(cfg, overrides, search_path=dirs, schema=schema)
    return cfg


def _from_source(source: Any, overrides: list[str], extra_dirs: list[Path]):
    from omegaconf import DictConfig, OmegaConf

    from stoker.config.nodes import to_data

    if source is None:
        return to_omegaconf({}), None, overrides
    if isinstance(source, DictConfig):
        cfg = OmegaConf.create(OmegaConf.to_container(source, resolve=False))
        attach_sources(cfg, sources_of(source))
        return cfg, None, overrides
    if isinstance(source, dict):
        return to_omegaconf(to_data(source)), None, overrides
    if callable(source) and not isinstance(source, (str, Path)):
        return _from_python_result(source(), getattr(source, "__qualname__", "function")), None, overrides
    if not isinstance(source, (str, Path)):
        raise ConfigError(f"cannot compose a config from a {type(source).__name__}")

    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_dir(path, "config", overrides)
    if path.is_file():
        if path.suffix == ".py":
            return _from_python_file(path, None), path.parent, overrides
        return _from_file(path, overrides)
    if ":" in text:
        head, _, fn_name = text.rpartition(":")
        if head.endswith(".py"):
            p = Path(head).expanduser()
            if not p.is_file():
                raise ConfigError(f"Python config file not found: {head}")
            return _from_python_file(p, fn_name), p.parent, overrides
        if head and fn_name and all(x.isidentifier() for x in head.split(".")):
            return _from_module_function(head, fn_name), None, overrides
    if path.suffix.lower() in SUFFIXES or path.suffix == ".py" or "/" in text or "\\" in text:
        raise ConfigError(f"config file not found: {text}")
    from stoker.config.recipes import find_recipe

    return _from_file(find_recipe(text), overrides)


def _from_file(path: Path, overrides: list[str]):
    data, sources = read(path)
    if isinstance(data, dict) and "defaults" in data:
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise ConfigError(
                f"{path}: a 'defaults:' list is only supported in YAML files (Hydra composition)")
        return _from_dir(path.parent, path.stem, overrides, primary_sources=sources)
    return to_omegaconf(data, sources, str(path)), path.parent, overrides


def _from_dir(config_dir: Path, name: str, overrides: list[str], primary_sources=None):
    """Hydra composition of ``config_dir/name.yaml`` with its defaults list."""
    from omegaconf import OmegaConf

    primary = config_dir / f"{name}.yaml"
    if not primary.is_file():
        raise ConfigError(f"{config_dir} is a directory without {name}.yaml; "
                          "point at a config file or a directory with config.yaml")
    if primary_sources is None:
        _, primary_sources = read(primary)  # parse errors with file:line:column first
    group_ovr, rest = [], []
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0].split("@", 1)[0].replace(".", "/")
        is_group = (config_dir / key).is_dir() and "=@" not in o
        (group_ovr if is_group else rest).append(o)

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from stoker.config import resolvers

    resolvers.ensure_registered()
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None,
                                   job_name="stoker"):
            cfg = hydra_compose(config_name=name, overrides=group_ovr, return_hydra_config=True)
    except HydraException as e:
        raise ConfigError(f"{primary}: cannot compose the defaults list: {_first_lines(e)}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{primary}: {_first_lines(e)}") from None
    except Exception as e:  # noqa: BLE001 - yaml errors etc. from a group file
        raise ConfigError(f"{primary}: cannot compose config: {type(e).__name__}: {_first_lines(e)}") from None
    choices = {}
    try:
        choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=False))
    except Exception:  # noqa: BLE001 - line info is a hint only
        pass
    OmegaConf.set_struct(cfg, False)
    OmegaConf.set_readonly(cfg, False)
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("hydra", None)
    sources = dict(primary_sources)
    for group, option in choices.items():
        if not isinstance(option, str) or group.startswith("hydra"):
            continue
        for suffix in (".yaml", ".yml"):
            f = config_dir / group / f"{option}{suffix}"
            if f.is_file():
                try:
                    _, s = read(f)
                    sources.update(prefixed(s, group.replace("/", ".")))
                except ConfigError:
                    pass
    return to_omegaconf(data, sources, str(primary)), config_dir, rest


def _first_lines(e: BaseException, n: int = 6) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return "\n    ".join(lines[:n]) or type(e).__name__


def _from_python_result(result: Any, where: str):
    from stoker.config.nodes import to_data

    try:
        data = to_data(result)
    except ConfigError as e:
        raise ConfigError(f"{where} did not return a config: {e}") from None
    if hasattr(data, "_get_node"):  # already an OmegaConf tree
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(_plain_container(data))
        attach_sources(cfg, {"": (where, None)})
        return cfg
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must return a config mapping, not {type(result).__name__}")
    return to_omegaconf(data, {"": (where, None)}, where)


def _plain_container(cfg: Any) -> Any:
    from stoker.config.export import to_container

    return to_container(cfg, resolve=False)


def _from_python_file(path: Path, fn_name: str | None):
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    mod_name = f"stoker_config_{path.stem}_{digest}"
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load Python config {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # so `_target_`s pointing into it can be imported
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            sys.modules.pop(mod_name, None)
            raise
        except SyntaxError as e:
            sys.modules.pop(mod_name, None)
            raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
        except Exception as e:  # noqa: BLE001 - the user's config code failed; say where
            sys.modules.pop(mod_name, None)
            raise ConfigError(f"{path}: running the config file failed: {type(e).__name__}: {e}") from None
    return _call_config_function(module, fn_name, str(path))


def _from_module_function(mod_name: str, fn_name: str):
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"cannot import config module '{mod_name}': {e}") from None
    return _call_config_function(module, fn_name, mod_name)


def _call_config_function(module: Any, fn_name: str | None, where: str):
    names = [fn_name] if fn_name else list(PY_CONFIG_FUNCTIONS)
    fn: Callable[[], Any] | None = None
    for n in names:
        fn = getattr(module, n, None)
        if callable(fn):
            break
    if fn is None or not callable(fn):
        wanted = fn_name or " or ".join(PY_CONFIG_FUNCTIONS)
        funcs = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        from stoker.config.targets import suggest

        hint = suggest(fn_name, funcs) if fn_name else ""
        raise ConfigError(f"{where} has no function {wanted}.{hint}")
    try:
        result = fn()
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{where}:{getattr(fn, '__name__', '?')}() failed: {type(e).__name__}: {e}") from None
    return _from_python_result(result, f"{where}:{getattr(fn, '__name__', '?')}")
