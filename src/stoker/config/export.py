"""Export a config tree to YAML/TOML/JSON so that it loads back to the identical tree.

Interpolations (``${model.dim}``, ``${oc.env:X}``), ``???`` and ``_partial_`` are written
as they are, never resolved. TOML has no null: None is written as ``"__none__"`` and read
back as None by :mod:`stoker.config.files`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stoker.atomic import atomic_write_text, check_dir_path
from stoker.config.files import TOML_NONE, format_of
from stoker.errors import ConfigError, ConfigProblem


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, str) and type(x) is not str:
        return str.__str__(x)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def interpolation_problem(e: Exception, cfg: Any = None) -> ConfigProblem:
    """A ConfigProblem for an OmegaConf resolution error (path from its full_key)."""
    from stoker.config.files import problem

    path = str(getattr(e, "full_key", "") or "")
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    cause = e.__cause__ or e.__context__
    if isinstance(cause, ConfigError):
        msg = str(cause)
    name = type(e).__name__
    if "Interpolation" in name or "Resolver" in name or "GrammarParse" in name:
        msg = f"cannot resolve interpolation: {msg}"
    return problem(path, msg, cfg)


def to_container(cfg: Any, resolve: bool = True) -> Any:
    """Plain dicts/lists of a config. With ``resolve``, interpolations are replaced by their
    values (ConfigError naming the node when one cannot be resolved); ``???`` stays."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, (DictConfig, ListConfig)):
        return _plain(cfg)
    try:
        data = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=False)
    except OmegaConfBaseException as e:
        raise ConfigError(problems=[interpolation_problem(e, cfg)]) from None
    except ConfigError:
        raise
    return _plain(data)


_ENV_MARK = "\x00stoker-env\x00"


def to_record(cfg: Any) -> Any:
    """Plain data of ``cfg`` as a run records it (``config.yaml``, checkpoints, artifacts):
    resolved, except values that come from the environment.

    A value written ``${oc.env:VAR}``, or one that reaches such a value through references
    (``key: ${tracker.token}``), is kept as written, so a secret exported in the shell never
    lands in a file; re-running or resuming from the record resolves it again then. Every
    other interpolation (``${model.dim}``, ``${art:...}``) is resolved as usual.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    resolved = to_container(cfg, resolve=True)
    if not isinstance(cfg, (DictConfig, ListConfig)):
        return resolved
    raw = to_container(cfg, resolve=False)
    marked, found = _mark_env(raw)
    if not found:
        return resolved
    # Resolve once more with every environment value replaced by a marker: what carries
    # the marker afterwards depends on the environment and is recorded as written.
    probe = to_container(OmegaConf.create(marked), resolve=True)
    return _merge_record(resolved, probe, raw)


def _mark_env(raw: Any) -> tuple[Any, bool]:
    if isinstance(raw, dict):
        pairs = {k: _mark_env(v) for k, v in raw.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(f for _, f in pairs.values())
    if isinstance(raw, list):
        pairs_l = [_mark_env(v) for v in raw]
        return [v for v, _ in pairs_l], any(f for _, f in pairs_l)
    if isinstance(raw, str) and "oc.env" in raw and "${" in raw:
        return _ENV_MARK, True
    return raw, False


def _has_mark(x: Any) -> bool:
    if isinstance(x, dict):
        return any(_has_mark(v) for v in x.values())
    if isinstance(x, list):
        return any(_has_mark(v) for v in x)
    return isinstance(x, str) and _ENV_MARK in x


def _merge_record(resolved: Any, probe: Any, raw: Any) -> Any:
    if isinstance(raw, dict) and isinstance(resolved, dict) and isinstance(probe, dict):
        return {k: _merge_record(resolved[k], probe.get(k), raw[k]) for k in resolved}
    if isinstance(raw, list) and isinstance(resolved, list) and isinstance(probe, list):
        return [_merge_record(a, b, c) for a, b, c in zip(resolved, probe, raw)]
    return raw if _has_mark(probe) else resolved


def _toml_ready(x: Any) -> Any:
    if x is None:
        return TOML_NONE
    if isinstance(x, dict):
        return {k: _toml_ready(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_toml_ready(v) for v in x]
    return x


def dumps(cfg: Any, fmt: str = "yaml") -> str:
    """Text of ``cfg`` in ``fmt`` (yaml/toml/json), interpolations kept."""
    data = to_container(cfg, resolve=False)
    if not isinstance(data, dict):
        raise ConfigError(f"only mappings can be exported, not {type(data).__name__}")
    if fmt == "yaml":
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "toml":
        import tomli_w

        try:
            return tomli_w.dumps(_toml_ready(data))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"cannot write this config as TOML: {e}") from None
    raise ConfigError(f"unknown export format '{fmt}'; use yaml, toml or json")


def save(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` to ``path`` (format from the extension) atomically; returns the path."""
    p = Path(path).expanduser()
    text = dumps(cfg, format_of(p))
    check_dir_path(p.parent, "the folder of the config file")
    try:
        write_atomic(p, text)
    except OSError as exc:  # a file in the way, a full disk: a message, not a traceback
        from stoker.errors import write_failure

        raise write_failure(exc, f"the config file {p}") from exc
    return p


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, then rename: never a half-written file."""
    atomic_write_text(path, text)