"""Check a whole config before anything runs, and report every problem at once.

* interpolations resolve (no missing key, no cycle, no unknown resolver);
* no ``???`` is left;
* every ``_target_`` imports, its argument names exist in its signature ("Did you mean"),
  and values match its annotations (Pydantic, lax mode: ``"3"`` is an int, ``"a/b"`` a Path);
  with ``trust`` (a config from an archive or a registry), the trust rule judges each
  target first (:func:`stoker.config.targets.judge_target`: on what it resolves to);
* with a ``schema`` (dataclass / Pydantic model / function signature): no unknown keys,
  nested dataclasses and models, ``Literal`` and (discriminated) unions, required fields.

Each problem has its dotted path and, when the value came from a file, file:line.
"""
from __future__ import annotations

import typing
from typing import Any

from stoker.config import schema as sch
from stoker.config._gc import gc_paused
from stoker.config.fastpaths import NO_FAST, fast_ref, surely_fits
from stoker.config.files import join, problem
from stoker.config.targets import (RESERVED, accepts_any_kwargs, check_trusted, import_target,
                                   keyword_names, signature_of, suggest, target_name,
                                   type_hints_of)
from stoker.errors import ConfigError, ConfigProblem


class _Bad:
    """Placeholder for a value that could not be resolved (already reported)."""

    def __repr__(self) -> str:
        return "<unresolved>"


BAD = _Bad()


class _Missing:
    def __repr__(self) -> str:
        return "???"


MISSING = _Missing()


# ---------------------------------------------------------------------------- resolution
def resolve_all(cfg: Any, problems: list[ConfigProblem], ref_paths: set[str] | None = None) -> Any:
    """Plain data of ``cfg`` with every interpolation resolved; failures become problems.

    Paths whose value is a reference to another node (``same: ${model}``) are added to
    ``ref_paths`` so that checks report a problem once, where the node is defined."""
    if ref_paths is None:
        ref_paths = set()
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from stoker.config.export import _plain, interpolation_problem

    root = cfg
    seen_messages: set[str] = set()

    def value_of(container: Any, key: Any, path: str) -> Any:
        node = container._get_node(key)
        if node is None:
            return None
        if node._is_interpolation():
            fast = fast_ref(root, node._value())
            if fast is not NO_FAST:
                if isinstance(fast, (DictConfig, ListConfig)):
                    ref_paths.add(path)
                    try:
                        return _mark_missing(_plain(OmegaConf.to_container(fast, resolve=True, throw_on_missing=False)))
                    except (OmegaConfBaseException, ConfigError):
                        pass  # fall through: OmegaConf gives the precise message
                else:
                    return fast
            try:
                v = container[key]
                if isinstance(v, (DictConfig, ListConfig)):
                    ref_paths.add(path)  # `${model}`: checked where it is defined
                    v = OmegaConf.to_container(v, resolve=True, throw_on_missing=False)
                return _mark_missing(_plain(v))
            except (OmegaConfBaseException, ConfigError) as e:
                if isinstance(e, ConfigError) and not isinstance(e, OmegaConfBaseException):
                    message = f"cannot resolve interpolation: {e}"
                else:
                    if "MissingMandatoryValue" in str(e) or type(e).__name__ == "MissingMandatoryValue":
                        return BAD  # the ??? itself is reported where it is
                    message = interpolation_problem(e, root).message
                if message not in seen_messages:  # one broken link, reported once
                    seen_messages.add(message)
                    problems.append(problem(path, message, root))
                return BAD
        if isinstance(node, (DictConfig, ListConfig)):
            if node._is_none():
                return None
            if node._is_missing():
                return MISSING
            return walk(node, path)
        raw = node._value()
        if raw == "???":
            return MISSING
        return _plain(raw)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, DictConfig):
            return {str(k): value_of(node, k, join(path, str(k))) for k in node.keys()}
        return [value_of(node, i, join(path, i)) for i in range(len(node))]

    return walk(cfg, "")


def _mark_missing(x: Any) -> Any:
    if x == "???":
        return MISSING
    if isinstance(x, dict):
        return {k: _mark_missing(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_mark_missing(v) for v in x]
    return x


# ---------------------------------------------------------------------------- types
_ADAPTERS: dict[Any, Any] = {}


def _adapter(tp: Any) -> Any:
    try:
        return _ADAPTERS[tp]
    except (KeyError, TypeError):
        pass
    from pydantic import ConfigDict, TypeAdapter
    from pydantic.errors import PydanticUserError

    try:
        try:
            ad = TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))
        except PydanticUserError:
            ad = TypeAdapter(tp)
    except Exception:  # noqa: BLE001 - a type Pydantic cannot check is not checked
        ad = None
    try:
        _ADAPTERS[tp] = ad
    except TypeError:
        pass
    return ad


def check_type(value: Any, tp: Any) -> str | None:
    """None when ``value`` fits annotation ``tp``, else a sentence saying why not."""
    if tp is Any or tp is None or value is MISSING or value is BAD:
        return None
    try:
        if surely_fits(value, tp):
            return None
    except TypeError:  # unhashable or odd annotations: Pydantic decides
        pass
    ad = _adapter(tp)
    if ad is None:
        return None
    from pydantic import ValidationError

    try:
        ad.validate_python(value)
    except ValidationError as e:
        err = e.errors()[0] if e.errors() else {"msg": str(e)}
        loc = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err.get("loc", ()))
        where = f" at {loc.lstrip('.')}" if loc else ""
        return (f"expected {sch.type_name(tp)}, got {_show(value)}{where}: "
                f"{err.get('msg', 'invalid value')}")
    except Exception:  # noqa: BLE001 - validators of third-party types may raise anything
        return None
    return None


def _show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 60 else s[:57] + "..."


# ---------------------------------------------------------------------------- checks
class _Checker:
    def __init__(self, cfg: Any, ref_paths: set[str] | None = None,
                 trust: typing.Iterable[str] | None = None):
        self.cfg = cfg
        self.problems: list[ConfigProblem] = []
        self.ref_paths = ref_paths or set()
        self.trust = None if trust is None else tuple(trust)
        # keys of a `_target_` node that its owner reads, not the target (sch.node_keys)
        self.owned: dict[str, frozenset[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.problems.append(problem(path, message, self.cfg))

    # -- missing values anywhere
    def missing(self, data: Any, path: str) -> None:
        if path in self.ref_paths:
            return
        if data is MISSING:
            self.add(path, f"missing required value (???); set it, e.g. {path or 'key'}=...")
        elif isinstance(data, dict):
            for k, v in data.items():
                self.missing(v, join(path, k))
        elif isinstance(data, list):
            for i, v in enumerate(data):
                self.missing(v, join(path, i))

    # -- _target_ nodes anywhere
    def targets(self, data: Any, path: str) -> None:
        if path in self.ref_paths:
            return
        if isinstance(data, dict):
            if "_target_" in data:
                self.target_node(data, path)
            for k, v in data.items():
                if k not in RESERVED:
                    self.targets(v, join(path, k))
            if "_args_" in data and isinstance(data["_args_"], list):
                for i, v in enumerate(data["_args_"]):
                    self.targets(v, join(join(path, "_args_"), i))
        elif isinstance(data, list):
            for i, v in enumerate(data):
                self.targets(v, join(path, i))

    def target_node(self, data: dict[str, Any], path: str) -> None:
        target = data["_target_"]
        tpath = join(path, "_target_")
        if target is BAD or target is MISSING:
            return
        if not isinstance(target, str):
            self.add(tpath, f"_target_ must be a dotted path string, got {_show(target)}")
            return
        try:
            check_trusted(target, self.trust)  # before importing anything
            fn = import_target(target)
        except ConfigError as e:
            self.add(tpath, str(e))
            return
        if not callable(fn):
            self.add(tpath, f"'{target}' is not callable")
            return
        partial = data.get("_partial_")
        if partial not in (None, True, False, BAD):
            self.add(join(path, "_partial_"), f"_partial_ must be true or false, got {_show(partial)}")
        sig = signature_of(fn)
        if sig is None:
            return
        names = keyword_names(sig)
        any_kw = accepts_any_kwargs(sig)
        hints = type_hints_of(fn)
        where = f" in {path}" if path else ""
        owned = self.owned.get(path, frozenset())
        for key, value in data.items():
            if key in RESERVED or key in owned:
                continue
            if key not in names:
                if any_kw:
                    continue
                self.add(join(path, key),
                         f"Unknown key '{key}'{where} ({target}).{suggest(key, names)}")
                continue
            tp = hints.get(key)
            if tp is not None:
                self.value(value, tp, join(path, key), check_targets=False)

    # -- schema
    def schema(self, data: Any, schema: Any, path: str) -> None:
        fields = sch.fields_of(schema)
        if fields is None:
            return
        if not isinstance(data, dict):
            if data not in (MISSING, BAD):
                self.add(path, f"expected a mapping for {_schema_name(schema)}, got {_show(data)}")
            return
        label = "argument" if isinstance(schema, sch.SignatureSchema) and not path else "key"
        for key, value in data.items():
            if key in RESERVED:
                continue
            if key not in fields:
                owner = f" in {path} ({_schema_name(schema)})" if path else ""
                self.add(join(path, key),
                         f"Unknown {label} '{key}'{owner}.{suggest(key, list(fields))}")
        for name, f in fields.items():
            if name not in data:
                if f.required:
                    self.add(join(path, name),
                             f"missing required value ({sch.type_name(f.type)}); set {join(path, name)}=...")
                continue
            self.value(data[name], f.type, join(path, name), check_targets=False)

    def value(self, value: Any, tp: Any, path: str, check_targets: bool) -> None:
        if value is MISSING or value is BAD or tp is Any:
            return
        tp_plain = sch.strip_annotated(tp)
        members = sch.non_none(tp)
        structured = [m for m in members if sch.is_structured(m)]
        if value is None:
            if type(None) in sch.union_members(tp) or tp_plain is type(None):
                return
            err = check_type(None, tp)
            if err:
                self.add(path, err)
            return
        if isinstance(value, dict) and "_target_" in value:
            tgt = value.get("_target_")
            for m in structured:
                try:
                    if isinstance(tgt, str) and tgt == target_name(m):
                        self.schema({k: v for k, v in value.items() if k != "_target_"}, m, path)
                        return
                except ConfigError:
                    pass
            for m in structured:
                owned = sch.node_keys(m)
                if owned:  # a node whose owner reads some keys: those against the schema
                    self.owned[path] = owned
                    self.schema({k: v for k, v in value.items() if k in owned}, m, path)
                    break
            return  # some other callable (a factory, a subclass): checked as a target node
        if structured and isinstance(value, dict):
            if len(structured) == 1:
                self.schema(value, structured[0], path)
                return
            chosen, reason = sch.choose_member(tp, value)
            if reason:
                self.add(path, reason + _imports_hint(reason))
                return
            if chosen is None:  # no tag: the member with the fewest problems
                best: list[ConfigProblem] | None = None
                for m in structured:
                    sub = _Checker(self.cfg)
                    sub.schema(value, m, path)
                    if best is None or len(sub.problems) < len(best):
                        best = sub.problems
                self.problems.extend(best or [])
                return
            self.schema(value, chosen, path)
            return
        if structured and not isinstance(value, dict):
            others = [m for m in members if not sch.is_structured(m)]
            if not others:
                self.add(path, f"expected a mapping for {sch.type_name(tp)}, got {_show(value)}")
                return
            tp = typing.Union[tuple(others)] if len(others) > 1 else others[0]  # type: ignore[assignment]
        if _contains_target(value):
            return  # built later; its own target check covers it
        err = check_type(value, tp)
        if err:
            self.add(path, err)


def _imports_hint(reason: str) -> str:
    """For an unknown tag (``architecture: my_model``): which user modules were imported,
    since a user's kind is registered by importing the module that defines it."""
    if "must be one of" not in reason:
        return ""
    from stoker.config.plugins import imported_modules

    mods = ", ".join(imported_modules()) or "none"
    return (f" (modules imported for this config: {mods}; a kind defined in your code is "
            "registered by importing its module: add it to `imports:` or pass --import MODULE)")


def _contains_target(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_contains_target(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_target(v) for v in value)
    return False


def _schema_name(schema: Any) -> str:
    if isinstance(schema, sch.SignatureSchema):
        return f"{schema.__qualname__}()"
    return getattr(schema, "__name__", str(schema))


def check(cfg: Any, schema: Any = None, *,
          trust: typing.Iterable[str] | None = None) -> list[ConfigProblem]:
    """Every problem in ``cfg`` (empty list when valid)."""
    return check_resolved(cfg, schema, trust=trust)[0]


@gc_paused
def check_resolved(cfg: Any, schema: Any = None, *, targets: bool = True,
                   trust: typing.Iterable[str] | None = None) -> tuple[list[ConfigProblem], Any]:
    """Every problem in ``cfg`` and its resolved plain data (what ``to_container(cfg,
    resolve=True)`` gives when there are no problems), computed in one pass.

    ``targets=False`` leaves ``_target_`` nodes unchecked (no import of their modules): a
    launcher submitting a job that validates them again uses it to avoid importing torch.
    ``trust``: see :func:`validate`."""
    cfg = _as_config(cfg)
    problems: list[ConfigProblem] = []
    ref_paths: set[str] = set()
    data = resolve_all(cfg, problems, ref_paths)
    checker = _Checker(cfg, ref_paths, trust)
    checker.problems = problems
    checker.missing(data, "")
    if schema is not None:
        checker.schema(data, schema, "")
    if targets:
        checker.targets(data, "")
    seen: set[tuple[str, str]] = set()
    out = []
    for p in checker.problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out, data


def validate(cfg: Any, schema: Any = None, *, trust: typing.Iterable[str] | None = None) -> None:
    """Raise ConfigError listing every problem of ``cfg`` (see module docstring).

    ``trust``: for a config that came from an archive, a registry or an artifact, the
    modules the user trusts (``trust=[]``: none). Each ``_target_`` is judged by the trust
    rule (:func:`stoker.config.targets.judge_target`): outside ``stoker``, ``torch`` and
    ``trust`` it is a problem ("refusing to import 'this' from an untrusted config; pass
    --trust this to allow it") and its module is never imported; inside, it is resolved and
    must be on the allowlist or in a ``trust`` module, and never in ``NEVER``. ``None`` (the
    default, for the user's own configs) imports whatever the targets name."""
    problems = check(cfg, schema, trust=trust)
    if problems:
        raise ConfigError(problems=problems)


def _as_config(cfg: Any) -> Any:
    from omegaconf import DictConfig, ListConfig

    if isinstance(cfg, (DictConfig, ListConfig)):
        return cfg
    from stoker.config.nodes import to_data
    from stoker.config.files import to_omegaconf

    return to_omegaconf(to_data(cfg))
