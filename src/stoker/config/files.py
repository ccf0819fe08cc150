"""Load YAML, TOML and JSON into one OmegaConf tree and remember where every node came from.

Where a value came from (file and line) is kept in a *source map* ({dotted path: (file,
line)}) attached to the root config, so that validation can point at ``recipe.yaml:12``
instead of only ``optim.lr``. Parse errors carry file:line:column.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stoker.errors import ConfigError, ConfigProblem
from stoker.untrusted import DuplicateKey, no_duplicate_keys

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}
# TOML has no null; exported configs write None as this string and loading turns it back.
TOML_NONE = "__none__"

SourceMap = dict[str, tuple[str, int]]
_SOURCES_ATTR = "stoker_sources"

# Hostile-input bounds. A YAML alias re-uses a node, so nine levels of nine aliases each
# ("billion laughs") expand to 387 million values and hang anything that walks or copies
# the tree (our line map, OmegaConf). Real configs hold a few thousand values and nest a
# few levels, so these limits only ever stop a bomb or a generated monster.
MAX_ALIAS_EXPANSION = 100_000  # values that aliases may add beyond the file's own nodes
MAX_DEPTH = 100  # nesting levels of mappings/lists in any format


# ---------------------------------------------------------------------------- paths
def join(path: str, key: Any) -> str:
    """Dotted path of a child: ``a.b`` + ``c`` -> ``a.b.c``; list index -> ``a.b[0]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def split(path: str) -> list[str | int]:
    """Inverse of :func:`join`: ``a.b[0].c`` -> ``['a', 'b', 0, 'c']``."""
    out: list[str | int] = []
    for part in path.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if not m:
            out.append(part)
            continue
        if m.group(1):
            out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


# ---------------------------------------------------------------------------- source maps
def attach_sources(cfg: Any, sources: SourceMap) -> None:
    """Remember ``sources`` on the root config (survives OmegaConf copies and merges)."""
    meta = cfg.__dict__.get("_metadata")
    if meta is not None:
        setattr(meta, _SOURCES_ATTR, dict(sources))


def sources_of(cfg: Any) -> SourceMap:
    meta = getattr(cfg, "__dict__", {}).get("_metadata")
    return dict(getattr(meta, _SOURCES_ATTR, None) or {})


def source_of(cfg: Any, path: str) -> tuple[str | None, int | None]:
    """File and line a dotted path came from (the nearest recorded ancestor), or (None, None)."""
    sources = sources_of(cfg)
    p = path
    while True:
        if p in sources:
            return sources[p]
        if not p:
            return (None, None)
        cut = max(p.rfind("."), p.rfind("["))
        p = p[:cut] if cut > 0 else ""


def prefixed(sources: SourceMap, prefix: str) -> SourceMap:
    if not prefix:
        return dict(sources)
    out: SourceMap = {}
    for k, v in sources.items():
        if not k:
            out[prefix] = v
        elif k.startswith("["):
            out[prefix + k] = v
        else:
            out[f"{prefix}.{k}"] = v
    return out


def problem(path: str, message: str, cfg: Any = None, file: str | None = None,
            line: int | None = None) -> ConfigProblem:
    """A ConfigProblem located via the config's source map unless file/line are given."""
    if file is None and cfg is not None:
        file, line = source_of(cfg, path)
    return ConfigProblem(path=path, message=message, file=file, line=line)


# ---------------------------------------------------------------------------- YAML
_yaml_loader_cls = None


def _yaml_loader():
    """A safe YAML loader that reads ``1e-3`` as a float (YAML 1.1 says string)."""
    global _yaml_loader_cls
    if _yaml_loader_cls is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class Loader(base):  # type: ignore[misc, valid-type]
            pass

        Loader.yaml_implicit_resolvers = {
            k: list(v) for k, v in base.yaml_implicit_resolvers.items()
        }
        float_re = re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        )
        Loader.add_implicit_resolver("tag:yaml.org,2002:float", float_re,
                                     list("-+0123456789."))
        _yaml_loader_cls = Loader
    return _yaml_loader_cls


def _yaml_lines(text: str, file: str, check_duplicates: bool, root: Any = None) -> SourceMap:
    import yaml

    if root is None:
        root = yaml.compose(text, Loader=_yaml_loader())
    sources: SourceMap = {}
    if root is None:
        return sources

    def walk(node: Any, path: str) -> None:
        sources[path] = (file, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                key = str(k.value)
                if check_duplicates and key in seen:
                    raise ConfigError(problems=[ConfigProblem(
                        join(path, key),
                        f"duplicate key '{key}' (first defined on line {seen[key]})",
                        file, k.start_mark.line + 1)])
                seen[key] = k.start_mark.line + 1
                child = join(path, key)
                walk(v, child)
                sources[child] = (file, k.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, join(path, i))

    walk(root, "")
    return sources


def _parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    import yaml

    try:
        # One parse: the node graph gives the line numbers, then becomes the data.
        loader = _yaml_loader()(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _check_yaml_graph(root, file)
            sources = _yaml_lines(text, file, check_duplicates=True, root=root) if root is not None else {}
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        what = e.problem or e.context or "invalid YAML"
        raise _parse_error(file, line, col, f"malformed YAML: {what}") from None
    except yaml.YAMLError as e:
        raise _parse_error(file, None, None, f"malformed YAML: {e}") from None
    except RecursionError:  # the composer recurses per level, before our depth check
        raise _too_deep(file) from None
    return data, sources


def _check_yaml_graph(root: Any, file: str) -> None:
    """Refuse alias cycles, alias bombs and over-deep nesting before anything walks the tree.

    Sizes and heights are memoised per node, so this costs one visit per *distinct* node
    however many times aliases repeat it, and counts depth as the expanded tree has it.
    """
    import yaml

    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]  # iterative post-order: (node, children done?)
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _yaml_children(node, yaml)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if height[key] > MAX_DEPTH:
                raise _too_deep(file, node.start_mark.line + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            raise _parse_error(
                file, node.start_mark.line + 1, None,
                "a YAML alias refers to its own anchor (a recursive structure); "
                "a config must be a tree: write the repeated part out")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _yaml_children(node, yaml) if id(kid) not in size)
    distinct = len(size)
    expanded = size[id(root)]
    if expanded - distinct > MAX_ALIAS_EXPANSION:
        raise _parse_error(
            file, None, None,
            f"YAML aliases (*name) expand this file to {expanded:,} values, more than "
            f"{MAX_ALIAS_EXPANSION:,} beyond its own {distinct:,} (an alias bomb?); refused "
            "before expanding. Write the repeated values out, or refer to them with "
            "${path.to.value} interpolations instead of nested anchors")


def _yaml_children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _too_deep(file: str, line: int | None = None) -> ConfigError:
    return _parse_error(
        file, line, None,
        f"nested more than {MAX_DEPTH} levels deep; a config this deep is not supported "
        "(flatten it, or split it into files joined with a defaults list or @file)")


def _check_depth(data: Any, file: str) -> None:
    """Refuse plain data nested deeper than MAX_DEPTH (iterative: no recursion limit)."""
    stack = [(data, 1)]
    while stack:
        x, depth = stack.pop()
        if isinstance(x, (dict, list)):
            if depth > MAX_DEPTH:
                raise _too_deep(file)
            stack.extend((v, depth + 1) for v in (x.values() if isinstance(x, dict) else x))


# ---------------------------------------------------------------------------- TOML
def _toml_lines(text: str, file: str) -> SourceMap:
    """Best-effort line map for TOML: table headers and ``key = value`` lines."""
    sources: SourceMap = {"": (file, 1)}
    table = ""
    counters: dict[str, int] = {}
    key_re = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            name = _toml_key(line[2:line.find("]]")])
            idx = counters.get(name, 0)
            counters[name] = idx + 1
            table = join(name, idx)
            sources.setdefault(name, (file, lineno))
            sources[table] = (file, lineno)
            continue
        if line.startswith("["):
            table = _toml_key(line[1:line.find("]")])
            sources[table] = (file, lineno)
            continue
        m = key_re.match(raw)
        if m:
            key = _toml_key(m.group(1))
            sources[f"{table}.{key}" if table else key] = (file, lineno)
    return sources


def _toml_key(s: str) -> str:
    parts = [p.strip().strip("\"'") for p in re.split(r"\.(?=(?:[^\"']*[\"'][^\"']*[\"'])*[^\"']*$)", s)]
    return ".".join(parts)


def _parse_toml(text: str, file: str) -> tuple[Any, SourceMap]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(file) from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise _parse_error(file, line, col, f"malformed TOML: {msg}") from None
    _check_depth(data, file)
    return _from_toml(data), _toml_lines(text, file)


def _from_toml(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _from_toml(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_toml(v) for v in x]
    if x == TOML_NONE:
        return None
    if hasattr(x, "isoformat") and not isinstance(x, (int, float, str)):
        return x.isoformat()  # dates/times: OmegaConf holds plain data only
    return x


# ---------------------------------------------------------------------------- JSON
def _duplicate_error(text: str, file: str, key: str) -> ConfigError:
    """A duplicate JSON key with its path and line, as YAML and TOML report one.

    ``json`` tells which key but not where; the YAML composer (JSON is YAML) finds its
    line. Where it cannot parse the text, the key alone is reported.
    """
    try:
        _yaml_lines(text, file, check_duplicates=True)
    except ConfigError as e:
        return e
    except Exception:  # noqa: BLE001 - the line is a hint; the duplicate is certain
        pass
    return ConfigError(problems=[ConfigProblem(key, f"duplicate key '{key}'", file)])


def _parse_json(text: str, file: str) -> tuple[Any, SourceMap]:
    try:
        # duplicate keys refused, not "last one wins" (YAML and TOML refuse them too)
        data = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except RecursionError:
        raise _too_deep(file) from None
    except DuplicateKey as e:
        raise _duplicate_error(text, file, e.key) from None
    except json.JSONDecodeError as e:
        raise _parse_error(file, e.lineno, e.colno, f"malformed JSON: {e.msg}") from None
    _check_depth(data, file)
    try:  # JSON is (almost always) YAML: reuse the YAML composer for line numbers
        sources = _yaml_lines(text, file, check_duplicates=False)
    except Exception:  # noqa: BLE001 - line numbers are a hint; the data parsed fine
        sources = {"": (file, 1)}
    return data, sources


# ---------------------------------------------------------------------------- public
def _parse_error(file: str, line: int | None, col: int | None, msg: str) -> ConfigError:
    loc = file + (f":{line}" if line else "") + (f":{col}" if line and col else "")
    return ConfigError(f"{loc}: {msg}",
                       problems=[ConfigProblem("", msg, file, line)])


def format_of(path: str | Path) -> str:
    fmt = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: unknown config format '{Path(path).suffix}'; "
            f"use one of {', '.join(sorted(SUFFIXES))}")
    return fmt


def parse(text: str, fmt: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse text in ``fmt`` (yaml/toml/json) into plain data and a source map."""
    parser = {"yaml": _parse_yaml, "toml": _parse_toml, "json": _parse_json}[fmt]
    return parser(text, file)


def read(path: str | Path) -> tuple[Any, SourceMap]:
    """Plain data and source map of a config file (no OmegaConf yet)."""
    p = Path(path)
    fmt = format_of(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(f"{p} is a directory, not a config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    return parse(text, fmt, str(p))


def to_omegaconf(data: Any, sources: SourceMap | None = None, file: str = "<string>"):
    """Wrap plain data in a DictConfig (non-struct) and attach its source map."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from stoker.config import resolvers

    resolvers.ensure_registered()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{file}: a config file must hold a mapping at the top level, "
            f"not {type(data).__name__}")
    try:
        cfg = OmegaConf.create(data, flags={"allow_objects": False})
    except OmegaConfBaseException as e:
        raise ConfigError(f"{file}: {e}") from None
    assert isinstance(cfg, DictConfig)
    attach_sources(cfg, sources or {})
    return cfg


def load(path: str | Path):
    """Load a YAML/TOML/JSON file into a DictConfig, remembering file:line of every node.

    Interpolations (``${...}``) stay unresolved; ``stoker.config.validation`` or
    ``to_container(resolve=True)`` resolves them.
    """
    data, sources = read(path)
    return to_omegaconf(data, sources, str(path))


def loads(text: str, fmt: str = "yaml", file: str = "<string>"):
    """Like :func:`load` for text already in memory."""
    data, sources = parse(text, fmt, file)
    return to_omegaconf(data, sources, file)
