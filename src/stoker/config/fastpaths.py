"""The config fast paths: rules copied from a library so that the common case skips it.

Each function here answers the plain, frequent case of something a library does, exactly as
that library would, and hands every other case to the library itself (so the grammar,
the corner cases and the error messages stay the library's). They exist for start-up time:
``stoker train ... --dryrun`` and ``stoker config show`` stay well under a second.

=====================  ==================================  ==========================
fast path              copy of                             the library decides
=====================  ==================================  ==========================
:func:`plain_override` Hydra's override lexer               anything but one plain
                       (``hydra/grammar/OverrideLexer.g4``) key and one-token value
                       and its visitor's conversions
:func:`fast_ref`       OmegaConf's ``${a.b.c}`` lookup      resolvers, relative or nested
                                                            interpolations, missing keys
:func:`surely_fits`    Pydantic's (lax) acceptance of a     every rejection, and every
                       value for an annotation              type not listed there
=====================  ==================================  ==========================

Agreement with each library is tested beside them: ``tests/config/test_fastpaths.py``
(property tests against Hydra's parser, OmegaConf's resolution and Pydantic). A change to a
rule here must keep those passing; a library upgrade that changes a rule fails them.
"""
from __future__ import annotations

import re
import typing
from typing import Any, NamedTuple

NO_FAST = object()  #: what a fast path returns when the library must decide

# ------------------------------------------------------------ Hydra override lexer
# The plain forms almost every override takes (`a.b=3`, `+x=true`, `~a.b`, `name=foo-bar`),
# recognised without importing Hydra's ANTLR parser (about 50 ms of CPU at start-up). The
# patterns are Hydra's own lexer rules (hydra/grammar/OverrideLexer.g4) for a key made of
# identifiers and a value that is exactly one FLOAT, INT, BOOL, NULL or ID token; the token
# is converted exactly as Hydra's visitor does (float(), int(), lower() == "true", None,
# the text), or a plain string of several such tokens and unquoted characters (`/`, `:`...).
# Anything else (spaces, quotes, lists, `${...}`, escapes, `$`, sweeps) goes to Hydra's
# parser, so the grammar and its error messages stay Hydra's.
_ID = r"[A-Za-z_][A-Za-z0-9_\-]*"
_INT_U = r"(?:0|[1-9](?:_?[0-9])*)"
_POINT_FLOAT = rf"(?:{_INT_U}\.|{_INT_U}?\.[0-9](?:_?[0-9])*)"
_FAST_KEY = re.compile(rf"(\+{{0,2}}|~)({_ID}(?:\.{_ID})*)(?:(=)(.*))?", re.S)
_FAST_TOKENS = (  # in the lexer's rule order: on a tie the earlier rule wins
    ("float", re.compile(rf"[+-]?(?:{_POINT_FLOAT}|(?:{_INT_U}|{_POINT_FLOAT})[eE][+-]?[0-9](?:_?[0-9])*"
                         r"|[Ii][Nn][Ff]|[Nn][Aa][Nn])")),
    ("int", re.compile(rf"[+-]?{_INT_U}")),
    ("bool", re.compile(r"[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]")),
    ("null", re.compile(r"[Nn][Uu][Ll][Ll]")),
    ("id", re.compile(_ID)),
)
# A value of several tokens drawn only from ID, INT, FLOAT, BOOL, NULL, UNQUOTED_CHAR (less
# `$` and `\\`) and COLON is a string: Hydra's visitor joins the tokens' text (nothing to
# unescape, no whitespace to strip). Paths (`data.path=/data/char`, `out=runs/a-1.5`) and
# `host:port` take this form; each of these characters lexes on its own, so any such text
# is a valid token sequence.
_PLAIN_STRING = re.compile(r"[A-Za-z0-9_\-/.+%*@?|:]+")


class PlainOverride(NamedTuple):
    """An override in one of the plain forms, as Hydra's parser would read it."""

    kind: str  # change | add | force | delete
    key: str
    value: Any
    has_value: bool


def _plain_value(text: str) -> Any:
    """The value of a one-token Hydra primitive, or NO_FAST."""
    if text == "":
        return ""  # `key=`: Hydra gives the empty string
    for kind, pattern in _FAST_TOKENS:
        if pattern.fullmatch(text):
            if kind in ("float", "int"):
                try:
                    return float(text) if kind == "float" else int(text)
                except ValueError:  # cannot happen for these tokens; let Hydra say so
                    return NO_FAST
            if kind == "bool":
                return text.lower() == "true"
            if kind == "null":
                return None
            return text
    if _PLAIN_STRING.fullmatch(text):
        return text
    return NO_FAST


def plain_override(text: str) -> PlainOverride | None:
    """``text`` read as Hydra would, for the plain forms; None when Hydra's parser must decide."""
    m = _FAST_KEY.fullmatch(text)
    if m is None:
        return None
    prefix, key, eq, raw = m.groups()
    if prefix == "~":
        if eq is None:
            return PlainOverride("delete", key, None, False)
        value = _plain_value(raw)
        if value is NO_FAST:
            return None
        return PlainOverride("delete", key, value, value is not None)  # `~a=null` is `~a`
    if eq is None:
        return None
    value = _plain_value(raw)
    if value is NO_FAST:
        return None
    return PlainOverride({"": "change", "+": "add", "++": "force"}[prefix], key, value, True)


# ------------------------------------------------------------ OmegaConf `${a.b}` lookup
_SIMPLE_REF = re.compile(r"^\$\{([A-Za-z_][\w\-]*(?:\.[\w\-]+)*)\}$")


def fast_ref(root: Any, raw: Any, depth: int = 0) -> Any:
    """Resolve a plain absolute ``${a.b.c}`` without OmegaConf's (slow) grammar parser.

    Returns the referenced container node, a plain value, or NO_FAST when OmegaConf must
    do it (resolvers, relative or nested interpolations, missing keys: its messages)."""
    from omegaconf import DictConfig, ListConfig

    if depth > 32 or not isinstance(raw, str):
        return NO_FAST
    m = _SIMPLE_REF.match(raw)
    if not m:
        return NO_FAST
    node = root
    for part in m.group(1).split("."):
        if isinstance(node, DictConfig):
            if part not in node.keys():
                return NO_FAST
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return NO_FAST
        if node._is_interpolation():
            return NO_FAST
    if isinstance(node, (DictConfig, ListConfig)):
        return node if not (node._is_none() or node._is_missing()) else NO_FAST
    v = node._value()
    if v == "???":
        return NO_FAST
    if isinstance(v, str) and type(v) is not str:
        v = str.__str__(v)
    if isinstance(v, str) and "${" in v:
        return NO_FAST
    return v


# ------------------------------------------------------------ Pydantic acceptance
def surely_fits(value: Any, tp: Any) -> bool:
    """True when Pydantic would certainly accept ``value`` for ``tp`` (an exact match).

    Config values are mostly ints, floats, bools and strings checked against annotations
    of the same type; answering those here skips building a Pydantic TypeAdapter per
    annotation (and importing Pydantic at all when nothing else needs it). Only exact
    matches answer True; every other case, and every rejection, is Pydantic's."""
    t = type(value)
    if tp is t and t in (int, float, bool, str):
        return True
    if tp is float:
        return t is int  # Pydantic's float takes an int in lax and strict mode
    if tp in _PATH_TYPES:
        return t is str
    origin = typing.get_origin(tp)
    if origin is None:
        return False
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return any(type(a) is t and a == value for a in args)
    if origin is typing.Union or origin is _UnionType:
        return any(surely_fits(value, m) for m in args)
    if origin is typing.Annotated:  # Field(gt=0) and friends: annotated_types bounds only
        return _within_bounds(value, args[1:]) and surely_fits(value, args[0])
    if origin is list and t is list and len(args) == 1:
        return all(surely_fits(v, args[0]) for v in value)
    if origin is tuple and t in (list, tuple) and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return all(surely_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(surely_fits(v, a) for v, a in zip(value, args))
    if origin is dict and t is dict and len(args) == 2:
        return all(surely_fits(k, args[0]) and surely_fits(v, args[1]) for k, v in value.items())
    return False


_BOUNDS = {"Gt": lambda v, b: v > b.gt, "Ge": lambda v, b: v >= b.ge,
           "Lt": lambda v, b: v < b.lt, "Le": lambda v, b: v <= b.le}


def _within_bounds(value: Any, metadata: tuple[Any, ...]) -> bool:
    """True when every item is an ``annotated_types`` bound that a number ``value`` meets."""
    if type(value) not in (int, float) or not metadata:
        return False
    for m in metadata:
        check = _BOUNDS.get(type(m).__name__)
        if check is None or type(m).__module__ != "annotated_types" or not check(value, m):
            return False
    return True


def _path_types() -> tuple[Any, ...]:
    import pathlib

    return (pathlib.Path, pathlib.PurePath)


_PATH_TYPES = _path_types()
try:
    from types import UnionType as _UnionType
except ImportError:  # pragma: no cover - Python < 3.10
    _UnionType = typing.Union  # type: ignore[assignment, misc]
