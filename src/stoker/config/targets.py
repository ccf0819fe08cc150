"""Turn ``_target_`` strings into callables and callables into ``_target_`` strings.

A target is ``pkg.mod.Name`` (Hydra style) or ``pkg.mod:Name.attr``. Failures say which
module could not be imported and why, so that a typo and a missing dependency look different.

Importing is running code: ``_target_: this.x`` prints the Zen of Python while a config is
merely validated. A user's own configs may import their own modules; a config that came
from elsewhere (a model archive, a registry, an artifact) is validated and built with a
``trust`` list (:func:`check_trusted`): only ``stoker``, ``torch`` and the listed module
prefixes are imported, anything else is refused *before* it is imported. Trust decides what
gets imported, not what a trusted target does when called (``torch.load`` is trusted), so
build untrusted configs only from sources whose targets you accept.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from stoker.errors import ConfigError

# Keys of a ``_target_`` node that are not arguments of the target.
RESERVED = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})
# Module prefixes an untrusted config may always import.
DEFAULT_TRUSTED = ("stoker", "torch")


class TargetError(ConfigError):
    """A ``_target_`` cannot be imported; ``reason`` is the sentence for the user."""

    def __init__(self, target: str, reason: str):
        self.target = target
        self.reason = reason
        super().__init__(f"cannot import target '{target}': {reason}")


class UntrustedTargetError(TargetError):
    """A ``_target_`` of an untrusted config names a module outside the trust list."""

    def __init__(self, target: str, module: str):
        ConfigError.__init__(
            self, f"refusing to import '{module}' from an untrusted config; pass --trust "
            f"{module} to allow it")
        self.target = target
        self.reason = str(self)
        self.module = module


def untrusted_module(path: str, trust: Iterable[str]) -> str | None:
    """The top-level module to name in ``--trust`` when ``path`` lies outside ``stoker``,
    ``torch`` and the ``trust`` prefixes; None when it may be imported."""
    module = str(path).strip().partition(":")[0]
    for prefix in (*DEFAULT_TRUSTED, *trust):
        p = str(prefix).strip().rstrip(".")
        if p and (module == p or module.startswith(p + ".")):
            return None
    return module.split(".")[0] or module


def iter_targets(tree: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(dotted config path, target string)`` in a plain config tree, read as strings:
    nothing is imported, so a trust check can run on all of them first."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            sub = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield sub, str(value)
            else:
                yield from iter_targets(value, sub)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from iter_targets(value, f"{path}[{i}]")


def untrusted_code(tree: Any, trust: Iterable[str]) -> list[tuple[str, str, str]]:
    """Every ``(config path, target or module, module to --trust)`` of a plain config that
    would import code outside stoker, torch and ``trust``: its ``_target_``s and the modules
    its ``imports:`` names. Strings only: nothing is imported."""
    trusted = [t.strip() for t in trust if t and str(t).strip()]
    named = list(iter_targets(tree))
    wanted = tree.get("imports") if isinstance(tree, dict) else None
    named += [(f"imports[{i}]", str(m)) for i, m in
              enumerate([wanted] if isinstance(wanted, str) else wanted or [])]
    return [(p, t, m) for p, t in named if (m := untrusted_module(t, trusted)) is not None]


def check_trusted(path: str, trust: Iterable[str] | None) -> None:
    """Raise :class:`UntrustedTargetError` (before any import) when ``trust`` is given and
    ``path`` is outside it. ``trust=None``: the user's own config, everything importable."""
    if trust is None:
        return
    module = untrusted_module(path, trust)
    if module is not None:
        raise UntrustedTargetError(str(path), module)


def target_name(obj: Any) -> str:
    """Dotted path of a class or function, as written in ``_target_``."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, functools.partial):
        return target_name(obj.func)
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not module or not qualname:
        raise ConfigError(f"{obj!r} has no importable name; use a module-level class or function")
    if "<locals>" in qualname:
        raise ConfigError(
            f"{module}.{qualname} is defined inside a function and cannot be imported by name; "
            "move it to module level")
    return f"{module}.{qualname}"


@functools.lru_cache(maxsize=1024)
def import_target(path: str) -> Any:
    """Import ``pkg.mod.Name`` / ``pkg.mod:Name`` and return the object."""
    if not isinstance(path, str) or not path.strip():
        raise TargetError(str(path), "a target must be a non-empty dotted path like 'torch.nn.Linear'")
    path = path.strip()
    if ":" in path:
        mod_name, _, attr = path.partition(":")
        module = _import_module(path, mod_name)
        return _getattr_chain(path, module, mod_name, attr.split("."))
    parts = path.split(".")
    if any(not p.isidentifier() for p in parts):
        raise TargetError(path, "not a valid dotted Python path")
    # Longest importable module prefix, then attributes.
    last_error: BaseException | None = None
    for i in range(len(parts), 0, -1):
        mod_name = ".".join(parts[:i])
        if mod_name in sys.modules:
            module = sys.modules[mod_name]
        else:
            try:
                module = importlib.import_module(mod_name)
            except ModuleNotFoundError as e:
                # A missing *prefix* module means "try a shorter prefix"; a missing dependency
                # inside an existing module is the real reason and must be reported.
                if e.name and not mod_name.startswith(e.name) and e.name != mod_name:
                    raise TargetError(path, f"importing module '{mod_name}' failed: {e}") from None
                last_error = e
                continue
            except Exception as e:  # noqa: BLE001 - report why the user's module fails
                raise TargetError(
                    path, f"importing module '{mod_name}' failed: {type(e).__name__}: {e}") from None
        return _getattr_chain(path, module, mod_name, parts[i:])
    raise TargetError(path, f"no module named '{parts[0]}'" if last_error else "not found")


def _import_module(path: str, mod_name: str) -> Any:
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise TargetError(path, f"no module named '{e.name or mod_name}'") from None
    except Exception as e:  # noqa: BLE001
        raise TargetError(path, f"importing module '{mod_name}' failed: {type(e).__name__}: {e}") from None


def _getattr_chain(path: str, obj: Any, mod_name: str, attrs: list[str]) -> Any:
    owner = mod_name
    for attr in attrs:
        if not hasattr(obj, attr):
            import difflib

            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise TargetError(path, f"'{owner}' has no attribute '{attr}'.{hint}")
        obj = getattr(obj, attr)
        owner = f"{owner}.{attr}"
    return obj


# Signatures and resolved annotations per callable: a recipe repeats the same few targets
# (24 blocks of torch.nn.Linear) and inspect.signature / typing.get_type_hints are slow.
_SIGNATURES: dict[Any, inspect.Signature | None] = {}
_HINTS: dict[Any, dict[str, Any]] = {}


def signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The call signature of a class or function, or None when Python cannot tell."""
    try:
        return _SIGNATURES[fn]
    except (KeyError, TypeError):
        pass
    try:
        sig: inspect.Signature | None = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    try:
        _SIGNATURES[fn] = sig
    except TypeError:  # unhashable callable: not cached
        pass
    return sig


def accepts_any_kwargs(sig: inspect.Signature) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def keyword_names(sig: inspect.Signature) -> list[str]:
    return [n for n, p in sig.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def type_hints_of(fn: Any) -> dict[str, Any]:
    """Resolved annotations of a callable's parameters; unresolvable ones are left out.

    Cached per callable; callers must not modify the returned dict."""
    try:
        return _HINTS[fn]
    except (KeyError, TypeError):
        pass
    hints = _type_hints_of(fn)
    try:
        _HINTS[fn] = hints
    except TypeError:
        pass
    return hints


def _type_hints_of(fn: Any) -> dict[str, Any]:
    import typing

    target = fn.__init__ if inspect.isclass(fn) and "__init__" in _own_dict(fn) else fn
    if inspect.isclass(fn) and _is_dataclass_or_model(fn):
        target = fn
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - annotations that cannot be evaluated are skipped
        out: dict[str, Any] = {}
        sig = signature_of(fn)
        if sig is None:
            return out
        for name, p in sig.parameters.items():
            if p.annotation is not inspect.Parameter.empty and not isinstance(p.annotation, str):
                out[name] = p.annotation
        return out


def _own_dict(cls: type) -> dict[str, Any]:
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return vars(klass)
    return {}


def _is_dataclass_or_model(cls: type) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(cls) or hasattr(cls, "model_fields")


def suggest(word: str, choices: list[str] | set[str]) -> str:
    """`` Did you mean 'x'?`` or an empty string."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
