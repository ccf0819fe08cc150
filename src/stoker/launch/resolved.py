"""The resolved arguments of an entrypoint task, kept beside its ``config.yaml``.

A task that runs an ``@stoker.entrypoint`` script starts ``script.py -c JOBDIR/config.yaml
--yes executor=local``: the script composes its config again (the function's defaults,
then the file), validates it and only then calls the function. The launcher has just done
all of that, so it also writes what it found, ``JOBDIR/config.resolved.json``::

    {"format": 1, "config_sha256": "<sha256 of config.yaml's bytes>",
     "function": "module:qualname", "schema": "<schema_fingerprint of the function>",
     "arguments": {...the validated, resolved arguments...}}

and the job calls the function with ``arguments`` without importing OmegaConf, Pydantic or
the executors (about half of a job's start-up). ``config.yaml`` stays the source of truth:
the job uses the JSON only when the file's checksum, the function and its schema (argument
names, types, required-ness, nested fields) are those it was written for, and composes the
file again otherwise, saying why. Only plain configs get one: no interpolation (``${...}``
resolves when the job runs, so its value may differ there) and nothing JSON does not give
back unchanged. ``_target_`` nodes (a nested dataclass default, a factory) are kept: the
launcher validated them with the job's own rules (an entrypoint's config is the user's, so
every target is trusted, there as here), and the job builds them exactly as composing would.
Standard library only on the reading side: the job imports this first.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

__all__ = ["RESOLVED_SUFFIX", "function_id", "plain_arguments", "read_resolved",
           "resolved_path", "write_resolved"]

FORMAT = 1
RESOLVED_SUFFIX = ".resolved.json"


def resolved_path(config: str | Path) -> Path:
    """``JOBDIR/config.yaml`` -> ``JOBDIR/config.resolved.json``."""
    config = Path(config)
    return config.with_name(config.stem + RESOLVED_SUFFIX)


def function_id(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def plain_arguments(cfg: Any, resolved: Any) -> dict[str, Any] | None:
    """``resolved`` (what validation returned for ``cfg``) when the job may use it in place
    of composing ``cfg`` again, else None (see the module docstring)."""
    from stoker.config.export import to_container

    if not isinstance(resolved, dict):
        return None
    try:
        if json.loads(json.dumps(resolved, allow_nan=False)) != resolved:
            return None  # tuples, non-string keys: JSON would give back something else
    except (TypeError, ValueError):  # Path, bytes, NaN...: not JSON
        return None
    if to_container(cfg, resolve=False) != resolved:
        return None  # an interpolation, resolved again (maybe differently) by the job
    return resolved


def write_resolved(config: Path, fn: Callable[..., Any], arguments: dict[str, Any]) -> Path:
    """Write ``config``'s sidecar for ``fn`` (after ``config`` itself: its checksum)."""
    from stoker.atomic import atomic_write_text
    from stoker.config.schema import SignatureSchema, schema_fingerprint

    path = resolved_path(config)
    atomic_write_text(path, json.dumps({
        "format": FORMAT, "config_sha256": _digest(config), "function": function_id(fn),
        "schema": schema_fingerprint(SignatureSchema(fn)), "arguments": arguments},
        indent=1) + "\n")
    return path


def read_resolved(config: str | Path, fn: Callable[..., Any]
                  ) -> tuple[dict[str, Any] | None, str | None]:
    """``(arguments, None)`` when ``config``'s sidecar holds ``fn``'s validated arguments for
    exactly this file; ``(None, why)`` when there is one but it does not fit (the caller
    composes the file and may say why); ``(None, None)`` when there is none."""
    config = Path(config)
    path = resolved_path(config)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"{path} cannot be read ({e})"
    if not isinstance(data, dict) or data.get("format") != FORMAT \
            or not isinstance(data.get("arguments"), dict):
        return None, f"{path} is not a resolved-arguments file this version of stoker reads"
    try:
        digest = _digest(config)
    except OSError as e:
        return None, f"{config} cannot be read ({e})"
    if data.get("config_sha256") != digest:
        return None, (f"{config} changed after launch (its checksum is not the one in "
                      f"{path.name})")
    if data.get("function") != function_id(fn):
        return None, (f"{path.name} was written for {data.get('function')}, not "
                      f"{function_id(fn)}")
    from stoker.config.schema import SignatureSchema, schema_fingerprint

    if data.get("schema") != schema_fingerprint(SignatureSchema(fn)):
        return None, (f"the arguments of {function_id(fn)} changed after launch (names, "
                      "types or nested fields)")
    return data["arguments"], None
