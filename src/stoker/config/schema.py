"""What a schema says about a config tree: fields, their types and defaults.

A schema is a dataclass, a Pydantic model, or the parameter list of a function
(:class:`SignatureSchema`, used by ``@stoker.entrypoint``). One small vocabulary over the
three lets validation, overrides and ``--help`` treat them alike.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

MISSING = "???"


@dataclass(frozen=True)
class Field:
    name: str
    type: Any  # annotation (Any when none)
    default: Any  # dataclasses.MISSING when required
    doc: str | None = None

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


class SignatureSchema:
    """The parameters of a function seen as a schema (one field per parameter)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "function")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)

    def fields(self) -> dict[str, Field]:
        sig = inspect.signature(self.fn)
        try:
            hints = typing.get_type_hints(self.fn, include_extras=True)
        except Exception:  # noqa: BLE001 - fall back to the raw annotations
            hints = {}
        out: dict[str, Field] = {}
        for name, p in sig.parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            ann = hints.get(name, p.annotation)
            if ann is inspect.Parameter.empty or isinstance(ann, str):
                ann = Any
            default = dataclasses.MISSING if p.default is inspect.Parameter.empty else p.default
            out[name] = Field(name, ann, default)
        return out


def strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is types.UnionType


def union_members(tp: Any) -> list[Any]:
    tp = strip_annotated(tp)
    if is_union(tp):
        return [strip_annotated(a) for a in typing.get_args(tp)]
    return [tp]


def non_none(tp: Any) -> list[Any]:
    return [a for a in union_members(tp) if a is not type(None)]


def is_structured(tp: Any) -> bool:
    """A dataclass or Pydantic model class (something with named fields)."""
    tp = strip_annotated(tp)
    return inspect.isclass(tp) and (dataclasses.is_dataclass(tp) or _is_model(tp))


def _is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and hasattr(tp, "model_fields") and hasattr(tp, "model_validate")


def fields_of(schema: Any) -> dict[str, Field] | None:
    """Named fields of a dataclass / Pydantic model / SignatureSchema, else None."""
    schema = strip_annotated(schema)
    if isinstance(schema, SignatureSchema):
        return schema.fields()
    if inspect.isclass(schema) and dataclasses.is_dataclass(schema):
        try:
            hints = typing.get_type_hints(schema, include_extras=True)
        except Exception:  # noqa: BLE001 - unresolvable forward refs: use what is there
            hints = {}
        out: dict[str, Field] = {}
        for f in dataclasses.fields(schema):
            if not f.init:
                continue
            ann = hints.get(f.name, f.type)
            if isinstance(ann, str):
                ann = Any
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = _Factory(f.default_factory)  # type: ignore[misc]
            else:
                default = dataclasses.MISSING
            out[f.name] = Field(f.name, ann, default, f.metadata.get("doc") if f.metadata else None)
        return out
    if _is_model(schema):
        out = {}
        for name, info in schema.model_fields.items():
            ann = info.annotation if info.annotation is not None else Any
            if info.metadata:
                ann = typing.Annotated[(ann, *info.metadata)]  # keep discriminators etc.
            if info.is_required():
                default = dataclasses.MISSING
            elif info.default_factory is not None:
                default = _Factory(info.default_factory)
            else:
                default = info.default
            key = info.alias or name
            out[key] = Field(key, ann, default, info.description)
        return out
    return None


class _Factory:
    """A default made by a factory (``field(default_factory=list)``)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn

    def __call__(self) -> Any:
        return self.fn()

    def __repr__(self) -> str:
        return f"{getattr(self.fn, '__name__', 'factory')}()"


def default_value(f: Field) -> Any:
    if f.default is dataclasses.MISSING:
        return dataclasses.MISSING
    return f.default() if isinstance(f.default, _Factory) else f.default


def default_tree(schema: Any) -> dict[str, Any]:
    """Config data for a schema from its defaults; a structured field without a default is
    built from its own field defaults; anything else required is ``???``."""
    from stoker.config.nodes import to_data

    out: dict[str, Any] = {}
    for name, f in (fields_of(schema) or {}).items():
        value = default_value(f)
        if value is dataclasses.MISSING:
            members = non_none(f.type)
            if len(members) == 1 and is_structured(members[0]):
                out[name] = default_tree(members[0])
            else:
                out[name] = MISSING
            continue
        data = to_data(value)
        if isinstance(data, dict) and "_target_" in data and is_structured(
                non_none(f.type)[0] if non_none(f.type) else None):
            cls = non_none(f.type)[0]
            from stoker.config.targets import target_name
            if data["_target_"] == target_name(cls):
                data = {k: v for k, v in data.items() if k != "_target_"}
        out[name] = data
    return out


def schema_fingerprint(schema: Any) -> str:
    """A digest of a schema's shape: every field's name, annotation and required-ness,
    the fields of nested dataclasses/models (also inside unions and containers) included.

    The same code gives the same digest in another process; adding, removing or retyping a
    field, or making one required, changes it. Defaults are left out: a config exported
    from a composed tree holds every value, so a changed default changes nothing it says.
    Used to tell whether arguments validated by a launcher still fit the job's code
    (:mod:`stoker.launch.resolved`)."""
    import hashlib

    lines: list[str] = []
    seen: set[Any] = set()

    def walk(tp: Any, prefix: str) -> None:
        for name, f in (fields_of(tp) or {}).items():
            lines.append(f"{prefix}{name}: {f.type!r} {'required' if f.required else 'optional'}")
            for member in _structured_in(f.type):
                if member in seen:
                    lines.append(f"{prefix}{name} -> {member!r} (above)")
                    continue
                seen.add(member)
                walk(member, f"{prefix}{name}.")

    walk(schema, "")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _structured_in(tp: Any) -> list[Any]:
    """Dataclasses/models named anywhere in an annotation (``list[A] | B | None``)."""
    tp = strip_annotated(tp)
    if is_structured(tp):
        return [tp]
    found: list[Any] = []
    for arg in typing.get_args(tp):
        if isinstance(arg, (list, tuple)):  # Callable[[A], B]
            for a in arg:
                found.extend(_structured_in(a))
        else:
            found.extend(_structured_in(arg))
    return found


NODE_KEYS_ATTR = "__stoker_node_keys__"


def node_keys(tp: Any) -> frozenset[str]:
    """Keys of a ``_target_`` node that its owner reads, not the target.

    A schema class describing such a node (a dataset node whose ``batch_size`` goes to the
    loader) lists them in ``__stoker_node_keys__``; validation checks those keys against the
    schema and the others against the target's signature."""
    keys = getattr(strip_annotated(tp), NODE_KEYS_ATTR, None)
    return frozenset(keys) if keys else frozenset()


def literal_values(tp: Any) -> tuple[Any, ...] | None:
    tp = strip_annotated(tp)
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    return None


def discriminator_of(tp: Any) -> str | None:
    """The discriminator field named in ``Annotated[Union[...], Field(discriminator=...)]``."""
    if typing.get_origin(tp) is typing.Annotated:
        for meta in typing.get_args(tp)[1:]:
            d = getattr(meta, "discriminator", None)
            if isinstance(d, str):
                return d
    return None


def choose_member(tp: Any, data: dict[str, Any]) -> tuple[Any | None, str | None]:
    """Pick the structured union member ``data`` describes, by its Literal tag field.

    Returns (member, None) or (None, reason) when no member fits the tag.
    """
    members = [m for m in non_none(tp) if is_structured(m)]
    disc = discriminator_of(tp)
    tags: dict[str, dict[Any, Any]] = {}
    for m in members:
        for name, f in (fields_of(m) or {}).items():
            lits = literal_values(f.type)
            if lits:
                for v in lits:
                    tags.setdefault(name, {})[v] = m
    keys = [disc] if disc else list(tags)
    for key in keys:
        if key in tags and key in data:
            chosen = tags[key].get(data[key])
            if chosen is not None:
                return chosen, None
            valid = ", ".join(repr(v) for v in tags[key])
            return None, f"'{key}' must be one of {valid}, got {data[key]!r}"
    if disc and disc in tags and disc not in data:
        valid = ", ".join(repr(v) for v in tags[disc])
        return None, f"missing '{disc}' (one of {valid}) to choose the kind of config"
    return None, None


def type_name(tp: Any) -> str:
    """Short human name of an annotation: ``int``, ``Path``, ``ModelConfig | None``."""
    tp = strip_annotated(tp)
    if tp is Any:
        return "Any"
    if is_union(tp):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    lits = literal_values(tp)
    if lits is not None:
        return "Literal[" + ", ".join(repr(v) for v in lits) + "]"
    if tp is type(None):
        return "None"
    origin = typing.get_origin(tp)
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if inspect.isclass(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")
