"""Command-line overrides in the Hydra grammar, applied to an OmegaConf tree.

``a.b=1`` changes an existing key, ``+a.new=1`` adds one, ``++a=1`` adds or changes,
``~a.b`` deletes; values are parsed by Hydra's own override parser (lists, dicts, quoted
strings, ``${...}`` interpolations). stoker adds ``key=@file.yaml[:section]`` (load a
sub-config from a YAML/TOML/JSON file) and ``key=option`` to pick a config-group file or a
registered factory by name. Every problem in a list of overrides is reported together;
an unknown key says "Did you mean".
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from stoker.config import schema as sch
from stoker.config._gc import gc_paused
from stoker.config.fastpaths import plain_override
from stoker.config.files import SUFFIXES, attach_sources, prefixed, read, sources_of
from stoker.errors import ConfigError, ConfigProblem

CLI = "command line"
_FILE_RE = re.compile(r"^(?P<prefix>\+{0,2})(?P<key>[A-Za-z_][\w.\-/]*)=@(?P<path>.+)$")
_parser = None


def _override_parser():
    global _parser
    if _parser is None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        _parser = OverridesParser.create()
    return _parser


class _Op:
    __slots__ = ("text", "kind", "key", "value", "has_value", "file_value")

    def __init__(self, text: str, kind: str, key: str, value: Any = None,
                 has_value: bool = True, file_value: tuple[Any, dict] | None = None):
        self.text, self.kind, self.key, self.value = text, kind, key, value
        self.has_value, self.file_value = has_value, file_value


def _fast_parse(text: str) -> _Op | None:
    """``parse`` for the plain forms (:func:`stoker.config.fastpaths.plain_override`), or
    None when Hydra's parser must decide."""
    plain = plain_override(text)
    if plain is None:
        return None
    return _Op(text, plain.kind, plain.key, plain.value, plain.has_value)


def parse(text: str, base_dirs: Sequence[Path] = ()) -> _Op:
    """Parse one override; raises ConfigError with a readable reason."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(problems=[ConfigProblem(str(text), "empty override; expected key=value", CLI)])
    m = _FILE_RE.match(text.strip())
    if m:
        kind = {"": "change", "+": "add", "++": "force"}[m.group("prefix")]
        key = m.group("key").replace("/", ".")
        return _Op(text, kind, key, None, True, _load_at(m.group("path"), key, base_dirs))
    fast = _fast_parse(text)
    if fast is not None:
        return fast
    return _hydra_parse(text)


def _hydra_parse(text: str) -> _Op:
    """``parse`` by Hydra's own override parser (every form of the grammar)."""
    from hydra.errors import HydraException

    try:
        o = _override_parser().parse_override(text)
    except HydraException as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else "cannot parse"
        raise ConfigError(problems=[ConfigProblem(
            text, f"invalid override: {msg}. Expected key=value, +key=value, ++key=value or ~key",
            CLI)]) from None
    except Exception as e:  # noqa: BLE001 - the ANTLR runtime raises assorted errors
        raise ConfigError(problems=[ConfigProblem(
            text, f"invalid override ({type(e).__name__}): expected key=value", CLI)]) from None
    if o.package is not None:
        raise ConfigError(problems=[ConfigProblem(
            text, "'key@package=value' is only valid for config groups of a defaults list", CLI)])
    if o.is_sweep_override():
        raise ConfigError(problems=[ConfigProblem(
            o.key_or_group, f"'{text}' is a sweep (several values): add -m (--multirun) to run one task per "
            "value. For a list write key=[a,b]; for a string with commas quote it: key='a,b'",
            CLI)])
    kind = {"CHANGE": "change", "ADD": "add", "FORCE_ADD": "force", "DEL": "delete"}[o.type.name]
    key = o.key_or_group.replace("/", ".")
    if kind == "delete":
        has_value = o._value is not None  # `~a` vs `~a=3`
        return _Op(text, kind, key, _plain(o.value()) if has_value else None, has_value)
    return _Op(text, kind, key, _plain(o.value()))


def _plain(v: Any) -> Any:
    """Hydra's parsed values as plain Python data."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if v is not None and not isinstance(v, (bool, int, float, str)):
        return str(v)
    return v


def _load_at(spec: str, key: str, base_dirs: Sequence[Path]) -> tuple[Any, dict]:
    """Data and source map of ``path[:section]`` for ``key=@path``."""
    path_s, section = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head and Path(head).suffix.lower() in SUFFIXES and "/" not in tail:
        path_s, section = head, tail
    path = Path(path_s).expanduser()
    candidates = [path] + [d / path for d in base_dirs if not path.is_absolute()]
    found = next((c for c in candidates if c.is_file()), None)
    special = next((c for c in candidates if c.exists() and not c.is_file()), None)
    if found is None and special is not None:  # /dev/zero, a FIFO, a directory: never read
        raise ConfigError(problems=[ConfigProblem(
            key, f"'{special}' for '{key}=@{spec}' is not a regular file (a directory, device "
            "or pipe); point @ at a .yaml, .toml or .json file", CLI)])
    if found is None:
        where = ", ".join(str(c) for c in candidates)
        raise ConfigError(problems=[ConfigProblem(
            key, f"file '{path_s}' for '{key}=@{spec}' does not exist (looked at {where})", CLI)])
    if found.suffix.lower() not in SUFFIXES:
        raise ConfigError(problems=[ConfigProblem(
            key, f"'{found}' is not a config file; use .yaml, .toml or .json", CLI)])
    data, sources = read(found)
    if section:
        for part in section.split("."):
            if not isinstance(data, dict) or part not in data:
                have = ", ".join(sorted(data)) if isinstance(data, dict) else "nothing"
                raise ConfigError(problems=[ConfigProblem(
                    key, f"section '{section}' not found in {found} (top-level keys: {have})",
                    str(found))])
            data = data[part]
        sub = {}
        for k, v in sources.items():
            if k == section or k.startswith(section + ".") or k.startswith(section + "["):
                sub[k[len(section):].lstrip(".")] = v
        sources = sub
    return data, sources


# ---------------------------------------------------------------------------- tree access
def _parts(key: str) -> list[str]:
    return [p for p in key.split(".")]


def _child(node: Any, part: str) -> Any:
    """The child node (unresolved) or None."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        if part not in node.keys():
            return None
        return node._get_node(part)
    if isinstance(node, ListConfig) and part.lstrip("-").isdigit():
        i = int(part)
        return node._get_node(i) if -len(node) <= i < len(node) else None
    return None


def _locate(cfg: Any, key: str) -> tuple[Any, str, Any]:
    """(parent node or None, last key part, node or None)."""
    parts = _parts(key)
    node = cfg
    for part in parts[:-1]:
        nxt = _child(node, part)
        if nxt is None:
            return None, parts[-1], None
        node = nxt
        if node._is_interpolation():
            try:
                node = node._dereference_node()
            except Exception:  # noqa: BLE001 - a broken interpolation: treat as absent
                return None, parts[-1], None
    return node, parts[-1], _child(node, parts[-1])


def _container_keys(node: Any) -> list[str]:
    from omegaconf import DictConfig

    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []


def _target_params(node: Any) -> tuple[str | None, list[str] | None, bool]:
    """(target path, its keyword names, accepts **kwargs) of a ``_target_`` node."""
    from omegaconf import DictConfig

    if not isinstance(node, DictConfig) or "_target_" not in node.keys():
        return None, None, False
    target = node._get_node("_target_")._value()
    if not isinstance(target, str):
        return None, None, False
    from stoker.config.targets import (accepts_any_kwargs, import_target, keyword_names,
                                       signature_of)

    try:
        fn = import_target(target)
    except ConfigError:
        return target, None, False
    sig = signature_of(fn)
    if sig is None:
        return target, None, True
    return target, keyword_names(sig), accepts_any_kwargs(sig)


def schema_at(schema: Any, key_parts: Sequence[str]) -> Any:
    """The annotation the schema gives a dotted path, or None when unknown."""
    tp: Any = schema
    for part in key_parts:
        fields = None
        for member in sch.non_none(tp):
            fields = sch.fields_of(member)
            if fields is not None:
                break
        if not fields or part not in fields:
            return None
        tp = fields[part].type
    return tp


def _options(key: str, search_dirs: Sequence[Path]) -> dict[str, Path]:
    """Config-group options for ``key``: files ``<dir>/<key as path>/<name>.<ext>``."""
    out: dict[str, Path] = {}
    rel = Path(*_parts(key))
    for d in search_dirs:
        group = d / rel
        if group.is_dir():
            for f in sorted(group.iterdir()):
                if f.suffix.lower() in SUFFIXES and f.is_file():
                    out.setdefault(f.stem, f)
    return out


# ---------------------------------------------------------------------------- apply
@gc_paused
def apply_overrides(cfg: Any, overrides: Iterable[str], *, search_path: Sequence[Path | str] = (),
                    schema: Any = None) -> Any:
    """Apply overrides to ``cfg`` in order (in place; also returned).

    ``search_path``: directories holding config groups (``model/small.yaml``) and against
    which relative ``@file`` paths are also tried. ``schema``: a dataclass / Pydantic model /
    SignatureSchema that says which keys may be set even when the tree lacks them.
    Raises ConfigError listing every bad override.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    dirs = [Path(d) for d in search_path]
    problems: list[ConfigProblem] = []
    sources = sources_of(cfg)
    for text in overrides:
        try:
            op = parse(text, dirs)
            _apply_one(cfg, op, dirs, schema, sources)
        except ConfigError as e:
            problems.extend(e.problems or [ConfigProblem(str(text), str(e), CLI)])
        except OmegaConfBaseException as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            problems.append(ConfigProblem(str(text), f"cannot apply override: {msg}", CLI))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            problems.append(ConfigProblem(
                str(text), f"cannot apply override: {type(e).__name__}: {e}", CLI))
    attach_sources(cfg, sources)
    del OmegaConf
    if problems:
        raise ConfigError(problems=problems)
    return cfg


def _set(cfg: Any, key: str, value: Any, *, merge: bool) -> None:
    from omegaconf import OmegaConf

    OmegaConf.update(cfg, key, value, merge=merge, force_add=True)


def _unknown_key_message(cfg: Any, op: _Op, parent: Any, last: str, schema: Any) -> str:
    from stoker.config.targets import suggest

    parts = _parts(op.key)
    where = ".".join(parts[:-1])
    choices = set(_container_keys(parent)) if parent is not None else set()
    target, params, _ = _target_params(parent) if parent is not None else (None, None, False)
    if params:
        choices |= set(params)
    fields = None
    tp = schema_at(schema, parts[:-1]) if schema is not None and parts[:-1] else schema
    for member in (sch.non_none(tp) if tp is not None else []):
        fields = sch.fields_of(member)
        if fields:
            choices |= set(fields)
            break
    choices.discard("_target_")
    label = "argument" if isinstance(schema, sch.SignatureSchema) and not where else "key"
    msg = f"Unknown {label} '{last}'"
    if where:
        msg += f" in {where}"
        if target:
            msg += f" ({target})"
    if parent is None and where:
        msg = f"Unknown key '{op.key}': '{where}' does not exist"
        choices = set()
    msg += "." + suggest(last, choices)
    fixed_signature = params is not None and not _target_params(parent)[2]
    if op.kind == "change" and not fixed_signature and not fields:
        msg += f" To add a new key, write +{op.key}=..."
    return msg


def _apply_one(cfg: Any, op: _Op, dirs: Sequence[Path], schema: Any, sources: dict) -> None:
    from omegaconf import DictConfig, ListConfig

    from stoker.config import factories

    parent, last, node = _locate(cfg, op.key)
    exists = node is not None

    if op.kind == "delete":
        if not exists:
            raise ConfigError(problems=[ConfigProblem(
                op.key, "cannot delete: " + _unknown_key_message(cfg, op, parent, last, schema)
                .replace(" To add a new key, write +" + op.key + "=...", ""), CLI)])
        if op.has_value:
            current = node._value() if not isinstance(node, (DictConfig, ListConfig)) else None
            if current != op.value:
                raise ConfigError(problems=[ConfigProblem(
                    op.key, f"cannot delete: its value is {current!r}, not {op.value!r}", CLI)])
        if isinstance(parent, ListConfig):
            del parent[int(last)]
        else:
            del parent[last]
        for k in [k for k in sources if k == op.key or k.startswith(op.key + ".")]:
            del sources[k]
        return

    # key=@file[:section]
    if op.file_value is not None:
        data, file_sources = op.file_value
        if op.kind == "add" and exists:
            raise ConfigError(problems=[ConfigProblem(
                op.key, f"'{op.key}' already exists; write {op.key}=@... to replace it", CLI)])
        if op.kind == "change" and not exists and not _may_add(cfg, op, parent, last, schema):
            raise ConfigError(problems=[ConfigProblem(
                op.key, _unknown_key_message(cfg, op, parent, last, schema), CLI)])
        _set(cfg, op.key, data, merge=False)
        sources.update(prefixed(file_sources, op.key))
        return

    # key=option: a config-group file or a registered factory
    value = op.value
    if isinstance(value, str) and "${" not in value and op.kind in ("change", "force", "add"):
        expected = schema_at(schema, _parts(op.key)) if schema is not None else None
        # a schema node that also takes a plain string (`init_from: PATH` or `{path: ...}`)
        # is set to the string, not read as the name of a config-group option
        is_tree = isinstance(node, DictConfig) or (
            expected is not None and any(sch.is_structured(m) for m in sch.non_none(expected))
            and str not in sch.non_none(expected))
        options = _options(op.key, dirs)
        info = factories.lookup(value, op.key, expected)
        if value in options:
            data, file_sources = read(options[value])
            _set(cfg, op.key, data, merge=False)
            sources.update(prefixed(file_sources, op.key))
            return
        wants_object = expected is not None and expected is not Any and str not in sch.non_none(expected)
        if info is not None and (is_tree or not exists or node._is_missing() or wants_object):
            _set(cfg, op.key, factories.node_for(info), merge=False)
            sources[op.key] = (f"factory {info.qualname}", info.line)
            return
        if is_tree and op.kind != "force" and (exists or options or expected is not None):
            valid = sorted(set(options) | {f.name for f in factories.factories_for(op.key, expected)})
            from stoker.config.targets import suggest

            hint = suggest(value, valid)
            listing = ", ".join(valid) if valid else "none registered"
            raise ConfigError(problems=[ConfigProblem(
                op.key, f"unknown option '{value}' for '{op.key}'.{hint} Valid options: {listing}. "
                f"(To set a plain string anyway, write ++{op.key}={value})", CLI)])

    if op.kind == "add" and exists:
        raise ConfigError(problems=[ConfigProblem(
            op.key, f"'{op.key}' already exists; write {op.key}=... to change it "
            f"(or ++{op.key}=... to add-or-change)", CLI)])
    if op.kind == "change" and not exists and not _may_add(cfg, op, parent, last, schema):
        raise ConfigError(problems=[ConfigProblem(
            op.key, _unknown_key_message(cfg, op, parent, last, schema), CLI)])
    if isinstance(parent, ListConfig):
        idx = int(last)
        if not -len(parent) <= idx < len(parent):
            raise ConfigError(problems=[ConfigProblem(
                op.key, f"index {idx} is out of range (the list has {len(parent)} items)", CLI)])
    _set(cfg, op.key, value, merge=isinstance(value, dict) and isinstance(node, DictConfig))
    sources[op.key] = (CLI, None)


def _may_add(cfg: Any, op: _Op, parent: Any, last: str, schema: Any) -> bool:
    """A missing key may be set without ``+`` when a target's signature or the schema has it."""
    if parent is not None:
        _, params, any_kw = _target_params(parent)
        if params is not None and (last in params or any_kw):
            return True
    if schema is not None:
        parts = _parts(op.key)
        if schema_at(schema, parts) is not None:
            return True
    return False
