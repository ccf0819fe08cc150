"""``stoker.build``: the one way from a config tree to objects.

Validates the whole tree first (every problem at once), then instantiates ``_target_``
nodes depth-first. ``_partial_: true`` gives ``functools.partial``; ``_args_`` are
positional arguments; ``_recursive_: false`` passes children unbuilt. A node reached
through a reference (``${model}``) is built once and shared.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from stoker.config.fastpaths import NO_FAST, fast_ref
from stoker.config.files import join, problem
from stoker.config.targets import RESERVED, check_trusted, import_target
from stoker.errors import ConfigError

_PURE_REF = re.compile(r"^\$\{\s*[A-Za-z_][\w\-]*(?:\.[\w\-]+|\[\d+\])*\s*\}$")


def build(cfg: Any, /, *, validate: bool = True, trust: Iterable[str] | None = None,
          **kwargs: Any) -> Any:
    """Instantiate ``cfg`` (DictConfig, dict or a ``Config(...)``) recursively.

    ``kwargs`` are extra keyword arguments for the root target, e.g.
    ``build(cfg.optim, params=model.parameters())``. ``trust``: for a config from an archive
    or a registry, the modules a user trusts besides the allowlist of the trust rule (see
    :func:`stoker.config.targets.judge_target`); every target is judged before anything is
    built, and a refused one is never called.
    """
    from omegaconf import DictConfig, ListConfig

    from stoker.config.nodes import to_data
    from stoker.config.files import to_omegaconf

    if not isinstance(cfg, (DictConfig, ListConfig)):
        data = to_data(cfg)
        if not isinstance(data, (dict, list)):
            return data
        if isinstance(data, list):
            from omegaconf import OmegaConf

            cfg = OmegaConf.create(data)
        else:
            cfg = to_omegaconf(data)
    if trust is not None and not validate:  # validation judges every target itself
        _refuse_untrusted(cfg, trust)
    if validate:
        from stoker.config.validation import check

        problems = check(cfg, trust=trust)
        if kwargs:  # arguments given here are not missing
            problems = [p for p in problems if p.path.split(".")[0] not in kwargs]
        if problems:
            raise ConfigError(problems=problems)
    builder = _Builder(cfg, trust)
    return builder.node(cfg, "", extra=kwargs)


def _refuse_untrusted(cfg: Any, trust: Iterable[str]) -> None:
    """Every target of an unvalidated untrusted config judged before the first is built."""
    from omegaconf import OmegaConf

    from stoker.config.targets import refuse_untrusted

    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - unresolvable values: judge the targets as written
        data = OmegaConf.to_container(cfg, resolve=False)
    refuse_untrusted(data, trust, source="the config")


class _Builder:
    def __init__(self, root: Any, trust: Iterable[str] | None = None):
        self.root = root
        self.memo: dict[int, Any] = {}
        self.trust = None if trust is None else tuple(trust)

    def node(self, node: Any, path: str, extra: dict[str, Any] | None = None) -> Any:
        from omegaconf import DictConfig, ListConfig

        if node._is_interpolation():
            raw = node._value()
            fast = fast_ref(self.root, raw)  # `${a.b}` without OmegaConf's grammar parser
            if fast is not NO_FAST:
                if isinstance(fast, (DictConfig, ListConfig)):
                    return self.node(fast, path)
                return self.plain(fast, path)
            if isinstance(raw, str) and _PURE_REF.match(raw):
                try:
                    target = node._dereference_node()
                except Exception as e:  # noqa: BLE001 - reported as the user's config problem
                    raise ConfigError(problems=[problem(path, f"cannot resolve {raw}: {e}", self.root)]) from None
                if target is not None and isinstance(target, (DictConfig, ListConfig)):
                    return self.node(target, path)
            return self.plain(self.resolved(node, path), path)
        if isinstance(node, (DictConfig, ListConfig)):
            key = id(node)
            if key in self.memo and not extra:
                return self.memo[key]
            if node._is_none():
                return None
            if isinstance(node, ListConfig):
                out: Any = [self.node(node._get_node(i), join(path, i)) for i in range(len(node))]
            else:
                out = self.mapping(node, path, extra or {})
            self.memo[key] = out
            return out
        return self.scalar(node, path)

    def scalar(self, node: Any, path: str) -> Any:
        v = node._value()
        if isinstance(v, str) and type(v) is not str:
            v = str.__str__(v)
        return v

    def resolved(self, node: Any, path: str) -> Any:
        from omegaconf import DictConfig, ListConfig, OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from stoker.config.export import interpolation_problem

        parent = node._get_parent()
        key = node._key()
        try:
            v = parent[key]
            if isinstance(v, (DictConfig, ListConfig)):
                v = OmegaConf.to_container(v, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(problems=[interpolation_problem(e, self.root)]) from None
        return v

    def plain(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            if "_target_" in value:
                return self.call(value, path, {})
            return {k: self.plain(v, join(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.plain(v, join(path, i)) for i, v in enumerate(value)]
        return value

    def mapping(self, node: Any, path: str, extra: dict[str, Any]) -> Any:
        keys = [str(k) for k in node.keys()]
        if "_target_" not in keys:
            if extra:
                raise ConfigError(f"{path or 'the config'} has no _target_, so it cannot take "
                                  f"arguments {sorted(extra)}")
            return {k: self.node(node._get_node(k), join(path, k)) for k in keys}
        recursive = node._get_node("_recursive_")._value() if "_recursive_" in keys else True
        values: dict[str, Any] = {}
        for k in keys:
            child = node._get_node(k)
            if k in ("_target_", "_partial_", "_recursive_", "_convert_"):
                values[k] = self.resolved(child, join(path, k)) if child._is_interpolation() else child._value()
            elif recursive is False:
                from stoker.config.export import to_container

                values[k] = to_container(child, resolve=True) if hasattr(child, "keys") or hasattr(child, "__len__") and not hasattr(child, "_value") else self.scalar(child, join(path, k))
            else:
                values[k] = self.node(child, join(path, k))
        return self.call(values, path, extra)

    def call(self, values: dict[str, Any], path: str, extra: dict[str, Any]) -> Any:
        target = values["_target_"]
        try:
            check_trusted(str(target), self.trust)  # before importing anything
            fn = import_target(str(target))
        except ConfigError as e:
            raise ConfigError(problems=[problem(join(path, "_target_"), str(e), self.root)]) from None
        args = list(values.get("_args_") or [])
        kwargs = {k: v for k, v in values.items() if k not in RESERVED}
        kwargs.update(extra)
        if values.get("_partial_") is True:
            return functools.partial(fn, *args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError) as e:
            where = path or "<root>"
            raise ConfigError(problems=[problem(
                path, f"building {target} at {where} failed: {type(e).__name__}: {e}", self.root)]) from e
