"""``${art:NAME[:VERSION|:ALIAS],FIELD}`` in configs, resolved through the registry.

The resolved artifact is recorded as an input of the current run (lineage), so a model
trained on ``${art:data,path}`` knows it came from ``art://data:v3``.
"""
from __future__ import annotations

from typing import Any

from stoker.errors import ArtifactError, ConfigError, ConfigProblem


def resolve_art(ref: str, field: str | None = None, *, registry: Any = None) -> Any:
    """Value of ``field`` (dotted for nested: ``metadata.vocab_size``) of the artifact."""
    from stoker.artifacts.registry import resolve_registry
    from stoker.artifacts.types import Artifact
    from stoker.artifacts.provenance import record_use

    ref = str(ref).strip()
    field = (field or "path").strip()
    where = f"${{art:{ref},{field}}}"
    try:
        reg = resolve_registry(registry)
        art = reg.load(ref, Artifact)
    except ArtifactError as e:
        raise _error(where, f"{e} Publish it first (e.g. `stoker data prepare ... --register "
                            "NAME`) or fix the name/version.") from None
    value: Any = art
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif not isinstance(value, dict) and part in getattr(type(value), "model_fields", {}):
            value = getattr(value, part)
        elif isinstance(value, Artifact) and part in value.extra_fields:
            value = value.extra_fields[part]
        elif isinstance(value, Artifact) and part == "uri":
            value = value.uri
        else:
            fields = sorted(set(getattr(type(art), "model_fields", {})) | set(art.extra_fields) | {"uri"})
            raise _error(where, f"{art.uri} ({art.type}) has no field {field!r}. "
                                f"Fields: {', '.join(f for f in fields if f != 'extra_fields')}.")
    record_use(art.uri)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
        return str(value)
    return value


def _error(where: str, message: str) -> ConfigError:
    # One line: OmegaConf re-raises resolver errors and keeps only the first line.
    text = f"{where}: {message}".replace("\n", " ")
    return ConfigError(text, problems=[ConfigProblem(where, message)])


def install() -> bool:
    """Point ``${art:...}`` in configs at :func:`resolve_art` (the process-default registry).

    The one installer: the config layer cannot import this one, so what starts work from a
    config calls it -- ``stoker.init``, the ``stoker`` command, ``@stoker.entrypoint`` scripts
    and the kit's ``stoker.cli`` helper -- and loading the :mod:`stoker.artifacts` package
    does too (the Nemotron kit's users expect ``${art:}`` to work once artifacts are in use).
    Returns True (kept for callers that check it).
    """
    from stoker.config.resolvers import set_art_resolver

    set_art_resolver(resolve_art)
    return True
