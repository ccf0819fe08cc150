"""``to_typed``: a config validated against a schema and returned as an instance of it.

It sits above both validation (every problem first, :mod:`stoker.config.validation`) and
building (a ``_target_`` node inside a typed field is built, :mod:`stoker.config.instantiate`),
so neither of those imports the other's caller.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from stoker.config import schema as sch
from stoker.config.files import join
from stoker.config.instantiate import build
from stoker.config.targets import target_name
from stoker.config.validation import _adapter, _contains_target, check_resolved
from stoker.errors import ConfigError, ConfigProblem


def to_typed(cfg: Any, schema: Any) -> Any:
    """Validate ``cfg`` against ``schema`` and return an instance of it.

    Nested dataclasses / Pydantic models are constructed; ``Path`` and other leaf types are
    converted by Pydantic. Fields typed ``Any``/``dict`` keep ``_target_`` sub-trees as plain
    dicts (build them later); a ``_target_`` node in a field of another type is built.
    For a :class:`~stoker.config.schema.SignatureSchema` the result is a dict of arguments.
    """
    problems, data = check_resolved(cfg, schema)
    if problems:
        raise ConfigError(problems=problems)
    return _convert(data, schema, "")


def from_resolved(data: dict[str, Any], schema: Any) -> Any:
    """:func:`to_typed` of data that :func:`check_resolved` already returned without
    problems for this schema (in this process or, through
    :mod:`stoker.launch.resolved`, in the launcher): the conversion without validating it
    again."""
    return _convert(data, schema, "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    if isinstance(tp, sch.SignatureSchema) or sch.is_structured(tp):
        fields = sch.fields_of(tp) or {}
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = _convert(value[name], f.type, join(path, name))
        if isinstance(tp, sch.SignatureSchema):
            return kwargs
        cls = sch.strip_annotated(tp)
        try:
            if dataclasses.is_dataclass(cls):
                return cls(**kwargs)
            return cls.model_validate(kwargs)
        except Exception as e:  # noqa: BLE001 - e.g. __post_init__/validators rejecting values
            raise ConfigError(problems=[ConfigProblem(path, f"invalid {cls.__name__}: {e}")]) from None
    if value is None:
        return None
    plain = sch.strip_annotated(tp)
    if tp is Any or plain in (dict, typing.Dict) or typing.get_origin(plain) in (dict, typing.Dict):
        return value
    members = sch.non_none(tp)
    structured = [m for m in members if sch.is_structured(m)]
    if isinstance(value, dict) and "_target_" in value:
        for m in structured:
            try:
                if value["_target_"] == target_name(m):
                    return _convert({k: v for k, v in value.items() if k != "_target_"}, m, path)
            except ConfigError:
                pass
        return build(value, validate=False)
    if structured and isinstance(value, dict):
        chosen = structured[0]
        if len(structured) > 1:
            picked, _ = sch.choose_member(tp, value)
            chosen = picked or chosen
        return _convert(value, chosen, path)
    if type(value) is tp and tp in (int, float, bool, str):
        return value  # what Pydantic gives back for an exact match: no adapter, no import
    if sch.discriminator_of(tp) is None and not _contains_target(value):
        ad = _adapter(tp)
        if ad is not None:
            try:
                return ad.validate_python(value)
            except Exception:  # noqa: BLE001 - already validated; keep the raw value
                return value
    return value
