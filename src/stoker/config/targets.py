"""Turn ``_target_`` strings into callables and callables into ``_target_`` strings, and
decide which targets a config from elsewhere may build (the trust rule).

A target is ``pkg.mod.Name`` (Hydra style) or ``pkg.mod:Name.attr``. Failures say which
module could not be imported and why, so that a typo and a missing dependency look different.

Importing is running code, and a name can reach anything its module imported
(``stoker.launch.executors.process.os.system`` is ``os.system``). A user's own configs may
build whatever they name; a config that came from elsewhere (a model archive, a registry,
an artifact) is validated and built with a ``trust`` list, and :func:`judge_target` decides
each of its targets *before anything is built or called*, in two steps:

1. by its text: a target outside ``stoker``, ``torch`` and the ``trust`` prefixes is refused
   before its module is imported, so its top-level code never runs;
2. on the resolved object (modules imported, attributes walked, nothing called): its real
   defining module (``__module__`` and, for Python code, the module whose globals it runs
   in) must be on an allowlist of what an archive may build -- classes of stoker's models,
   losses, metrics, callbacks and tokenizers, of ``torch.nn`` and ``torch.optim`` (with
   their schedulers), and ``torch.nn.functional``'s functions -- or inside a ``trust``
   module. :data:`NEVER` (the interpreter, processes, files, sockets, unpickling, code
   loading, stoker's own builders and launchers) is refused whatever ``trust`` says.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
import sys
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
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


# What an untrusted config may build, by the module that really defines it (and every
# submodule): classes from these ...
ALLOWED_CLASSES = ("stoker.models", "stoker.train.losses", "stoker.train.metrics",
                   "stoker.train.callbacks", "stoker.data.tokenizers", "torch.nn.modules",
                   "torch.optim")
# ... and functions from these (activations handed to a model as `_partial_`s).
ALLOWED_FUNCTIONS = ("torch.nn.functional",)
ALLOWED_SUMMARY = ("stoker's models, losses, metrics, callbacks and tokenizers, torch.nn "
                   "modules, torch.optim optimizers and schedulers, torch.nn.functional")
# Never callable from an untrusted config, whatever path names it and whatever --trust says:
# the interpreter, processes, files and the network; anything that loads or runs code
# (importers, unpicklers, torch.load, TorchScript, C++ extensions, compilers); stoker's own
# builders (which would build a nested config untrusted), writers and launchers.
NEVER = ("builtins", "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "pty",
         "signal", "shutil", "tempfile", "io", "_io", "pathlib", "socket", "_socket", "ssl",
         "http", "urllib", "ftplib", "smtplib", "webbrowser", "multiprocessing",
         "_multiprocessing", "concurrent", "threading", "_thread", "asyncio", "ctypes",
         "_ctypes", "gc", "types", "operator", "importlib", "pkgutil", "runpy", "code",
         "codeop", "zipimport", "pdb", "bdb", "pickle", "_pickle", "copyreg", "marshal",
         "shelve", "dill", "cloudpickle", "joblib", "numpy.lib", "torch.serialization",
         "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension", "torch._C",
         "torch._ops", "torch.library", "torch._dynamo", "torch._inductor", "torch.fx",
         "torch.export", "torch.multiprocessing", "torch.distributed", "stoker.config",
         "stoker.launch", "stoker.cli", "stoker.atomic", "stoker.package", "stoker._lazy",
         "stoker.models.registry")
# Modules whose public names include functions defined elsewhere (C kernels, dispatch
# wrappers): reached directly as ``<key>.<public name>``, such an object counts as the key's.
_REEXPORTS = {"torch.nn.functional": frozenset({
    "torch", "torch._C", "torch._C._nn", "torch._C._VariableFunctions", "torch._jit_internal"})}


@dataclass(frozen=True)
class Refusal:
    """Why an untrusted config may not build ``target``; ``trust`` is the module that
    ``--trust`` would allow (None: nothing can allow it)."""

    target: str
    reason: str
    trust: str | None


class UntrustedTargetError(TargetError):
    """A ``_target_`` of an untrusted config that the trust rule refuses."""

    def __init__(self, refusal: Refusal):
        ConfigError.__init__(self, refusal.reason)
        self.target = refusal.target
        self.reason = refusal.reason
        self.refusal = refusal
        self.module = refusal.trust


class UntrustedConfigError(ConfigError):
    """An untrusted config names code it may not build; every refusal, with its path."""

    def __init__(self, message: str, refusals: Sequence[tuple[str, Refusal]]):
        super().__init__(message)
        self.refusals = list(refusals)


def _under(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _prefixes(trust: Iterable[str]) -> tuple[str, ...]:
    if isinstance(trust, str):  # trust="mypkg": one module, not its letters
        trust = [trust]
    return tuple(p for t in trust if t and (p := str(t).strip().rstrip(".")))


def untrusted_module(path: str, trust: Iterable[str]) -> str | None:
    """The top-level module to name in ``--trust`` when ``path`` lies outside ``stoker``,
    ``torch`` and the ``trust`` prefixes; None when it may be imported. Text only: the
    first step of :func:`judge_target`, and the whole rule for ``imports:`` entries."""
    module = str(path).strip().partition(":")[0]
    if _under(module, (*DEFAULT_TRUSTED, *_prefixes(trust))):
        return None
    return module.split(".")[0] or module


def judge_target(target: str, trust: Iterable[str]) -> Refusal | None:
    """None when a config from elsewhere may build ``target``; else why not (the one trust
    rule, used by every untrusted path: validate/build with ``trust=``, restore, eval,
    generate and registry checkpoints).

    Decided on what would be called, never on how it is spelled: the target is resolved
    (its module imported, attributes walked through modules and classes only, nothing
    called) and the object is judged by its real defining modules."""
    text = str(target).strip()
    trusted = _prefixes(trust)
    parts = text.replace(":", ".").split(".")
    module = untrusted_module(text, trusted)
    if module is not None:
        if module in NEVER:  # `os.system`: no --trust to suggest
            return _never(text, f"names {module}")
        return Refusal(text, f"refusing to import '{module}' from an untrusted config; pass "
                       f"--trust {module} to allow it", module)
    special = next((p for p in parts if p.startswith("__")), None)
    if special is not None:
        return Refusal(text, f"'{text}' reaches through the special attribute '{special}', "
                       "which a config from elsewhere may never name", None)
    try:
        obj, owner = _resolve(text, project=_under(text.partition(":")[0], trusted))
    except UntrustedTargetError as e:
        return e.refusal
    except TargetError as e:
        return Refusal(text, f"cannot import target '{text}': {e.reason}", None)
    except Exception as e:  # noqa: BLE001 - a module's __getattr__ failing: refused, reported
        return Refusal(text, f"cannot resolve target '{text}': {type(e).__name__}: {e}", None)
    return _judge_resolved(text, obj, owner, trusted)


def _never(text: str, what: str) -> Refusal:
    return Refusal(text, f"'{text}' {what}, which a config from elsewhere may never call; "
                   "--trust cannot allow it", None)


def _resolve(text: str, *, project: bool) -> tuple[Any, Any]:
    """(object, the object its last attribute was read from): imports the module part and
    walks the attributes, through modules and classes only (an instance's attribute could
    run a property), calling nothing."""
    if project:  # a --trust module of the user's project imports from its root, as plugins do
        from stoker.config.plugins import add_project_dir

        add_project_dir()
    obj, mod_name, attrs = _locate(text)
    owner: Any = None
    for i, attr in enumerate(attrs):
        if not (inspect.ismodule(obj) or isinstance(obj, type)):
            raise UntrustedTargetError(Refusal(
                text, f"'{text}' reaches '{attr}' through a {type(obj).__name__} object; a "
                "config from elsewhere names only classes and functions of modules", None))
        owner = obj
        obj = _getattr_chain(text, obj, ".".join([mod_name, *attrs[:i]]), [attr])
    return obj, owner


def _defining_modules(obj: Any, owner: Any, name: str) -> list[str]:
    """The modules that really define ``obj``: ``__module__`` and, for Python code, the
    module whose globals it runs in (which a re-exported or re-labelled object cannot hide)."""
    if isinstance(obj, types.MethodType):
        return _defining_modules(obj.__func__, None, name)
    found: list[str | None] = []
    if isinstance(obj, types.BuiltinFunctionType):
        bound = getattr(obj, "__self__", None)
        found.append(getattr(obj, "__module__", None) or (
            bound.__name__ if inspect.ismodule(bound) else
            bound.__module__ if isinstance(bound, type) else type(bound).__module__))
    elif isinstance(obj, types.FunctionType):
        found += [obj.__module__, _globals_name(obj)]
    elif isinstance(obj, type):
        found.append(obj.__module__)
        init = vars(obj).get("__init__")
        if isinstance(init, types.FunctionType):
            found.append(_globals_name(init))
    else:  # a callable instance: its class decides
        found.append(type(obj).__module__)
    mods = list(dict.fromkeys(m if isinstance(m, str) and m else "?" for m in found))
    home = getattr(owner, "__name__", None) if inspect.ismodule(owner) else None
    if home in _REEXPORTS and not name.startswith("_") and getattr(owner, name, None) is obj \
            and not isinstance(obj, type) and all(m in _REEXPORTS[home] or m == home
                                                 for m in mods):
        return [home]
    return mods


def _globals_name(fn: types.FunctionType) -> str | None:
    """The module whose globals ``fn`` (unwrapped from its decorators) runs in."""
    try:
        fn = inspect.unwrap(fn)
    except ValueError:  # a __wrapped__ cycle: judge the outer function
        pass
    return getattr(fn, "__globals__", {}).get("__name__")


def _judge_resolved(text: str, obj: Any, owner: Any, trusted: tuple[str, ...]) -> Refusal | None:
    """The second step of :func:`judge_target`: the resolved object against NEVER, the
    user's trust list and the allowlist."""
    if inspect.ismodule(obj):
        return Refusal(text, f"'{text}' is the module {obj.__name__}, not a class or function; "
                       "a config from elsewhere builds classes and functions only", None)
    if not callable(obj):
        return Refusal(text, f"'{text}' is a {type(obj).__name__}, not a class or function",
                       None)
    leaf = text.replace(":", ".").rsplit(".", 1)[-1]
    mods = _defining_modules(obj, owner, leaf)
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or leaf
    shown = f"{mods[0]}.{qual}"
    denied = next((m for m in mods if _under(m, NEVER)), None)
    if denied is not None:
        return _never(text, f"resolves to {shown} (defined in {denied})")
    allowed = ALLOWED_CLASSES if isinstance(obj, type) else ALLOWED_FUNCTIONS
    outside = [m for m in mods if not (_under(m, trusted) or _under(m, allowed))]
    if not outside:
        return None
    home = outside[0]
    kind = "class" if isinstance(obj, type) else type(obj).__name__
    return Refusal(text, f"'{text}' resolves to {shown} (a {kind} defined in {home}), which "
                   f"is not on the list of what a config from elsewhere may build "
                   f"({ALLOWED_SUMMARY}); if you trust it, pass --trust {home}", home)


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


def untrusted_code(tree: Any, trust: Iterable[str]) -> list[tuple[str, Refusal]]:
    """Every ``(config path, refusal)`` of a plain config from elsewhere: its ``_target_``s
    judged by :func:`judge_target`, the modules its ``imports:`` names by their text (they
    are imported, not called). Nothing is built or called."""
    trusted = _prefixes(trust)
    named: list[tuple[str, str]] = []
    wanted = tree.get("imports") if isinstance(tree, dict) else None
    named += [(f"imports[{i}]", str(m)) for i, m in
              enumerate([wanted] if isinstance(wanted, str) else wanted or [])]
    bad = [(p, r) for p, t in iter_targets(tree) if (r := judge_target(t, trusted))]
    bad += _node_making_resolvers(tree, "")
    for p, m in named:
        if (top := untrusted_module(m, trusted)) is not None:
            bad.append((p, Refusal(m, f"refusing to import '{top}' from an untrusted config; "
                                   f"pass --trust {top} to allow it", top)))
    return bad


# Resolvers a config from elsewhere may use: they give strings (an environment variable, an
# artifact's path). Others (oc.decode, oc.create, a user's own) can make a `_target_` node
# at resolution time, after the tree was judged.
SAFE_RESOLVERS = frozenset({"oc.env", "art"})
_RESOLVER = re.compile(r"\$\{\s*([^\s:{}]+)\s*:")


def _node_making_resolvers(tree: Any, path: str) -> list[tuple[str, Refusal]]:
    """Every string of ``tree`` that calls a resolver outside :data:`SAFE_RESOLVERS`."""
    if isinstance(tree, dict):
        return [r for k, v in tree.items()
                for r in _node_making_resolvers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(tree, (list, tuple)):
        return [r for i, v in enumerate(tree) for r in _node_making_resolvers(v, f"{path}[{i}]")]
    if isinstance(tree, str):
        names = sorted(set(_RESOLVER.findall(tree)) - SAFE_RESOLVERS)
        if names:
            return [(path, Refusal(tree, f"uses the resolver '{names[0]}', which could make a "
                                   "node to build after this check; a config from elsewhere "
                                   "may use only ${path.to.key}, ${oc.env:...} and ${art:...}",
                                   None))]
    return []


def describe_untrusted(bad: Sequence[tuple[str, Refusal]], source: str) -> str:
    """One message for every refusal of :func:`untrusted_code`, with how to allow what can be."""
    def line(p: str, r: Refusal) -> str:
        said = f"'{r.target}' "  # the reason opens with the target: not twice on one line
        return f"{p} = {r.target}: {r.reason.removeprefix(said)}"

    shown = "\n  ".join(line(p, r) for p, r in bad)
    mods = " ".join(sorted({f"--trust {r.trust}" for _, r in bad if r.trust}))
    hint = (f"\nIf you trust whoever made it, allow those modules explicitly: {mods}"
            if mods else "")
    return (f"{source} names code that a config from elsewhere may not build:\n  {shown}\n"
            f"Nothing was built or called.{hint}")


def refuse_untrusted(tree: Any, trust: Iterable[str], *, source: str) -> None:
    """Raise :class:`UntrustedConfigError` listing every refusal of ``tree``, all at once."""
    bad = untrusted_code(tree, trust)
    if bad:
        raise UntrustedConfigError(describe_untrusted(bad, source), bad)


def check_trusted(path: str, trust: Iterable[str] | None) -> None:
    """Raise :class:`UntrustedTargetError` (before anything is built) when ``trust`` is given
    and :func:`judge_target` refuses ``path``. ``trust=None``: the user's own config."""
    if trust is None:
        return
    refusal = judge_target(path, trust)
    if refusal is not None:
        raise UntrustedTargetError(refusal)


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
    module, mod_name, attrs = _locate(path)
    return _getattr_chain(path.strip(), module, mod_name, attrs)


def _locate(path: str) -> tuple[Any, str, list[str]]:
    """(module, its name, the attributes still to walk) of a target: the longest importable
    module prefix (or the part before ``:``), imported."""
    if not isinstance(path, str) or not path.strip():
        raise TargetError(str(path), "a target must be a non-empty dotted path like 'torch.nn.Linear'")
    path = path.strip()
    if ":" in path:
        mod_name, _, attr = path.partition(":")
        return _import_module(path, mod_name), mod_name, attr.split(".")
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
        return module, mod_name, parts[i:]
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
