"""Artifact names, aliases and ``art://`` references: parsing and validation; and the
URI that names a tokenizer in artifact metadata.

Names become path segments in every backend (a folder on disk, a key prefix on S3), so they
are checked before anything touches storage: no ``..``, no ``/``, no hidden or absolute
names can escape the registry root.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoker.errors import ArtifactError

SCHEME = "art://"
LATEST = "latest"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION_RE = re.compile(r"^v([1-9][0-9]{0,8})$")
_HINT = (
    "Use 1-128 characters from letters, digits, '.', '_' and '-', starting with a letter "
    "or digit (for example 'gpt-char' or 'pile_v2')."
)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe artifact name, else raise ArtifactError saying why."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ArtifactError(f"Invalid artifact name {name!r}. {_HINT}")
    return name


def validate_alias(alias: str) -> str:
    """Aliases follow the name rules; ``latest`` and ``vN`` are reserved (computed)."""
    if not isinstance(alias, str) or not _NAME_RE.match(alias) or ".." in alias:
        raise ArtifactError(f"Invalid alias {alias!r}. {_HINT}")
    if alias == LATEST:
        raise ArtifactError(
            "The alias 'latest' is reserved: it always means the newest visible version and "
            "cannot be set, moved or removed by hand. Pick another alias (e.g. 'production')."
        )
    if _VERSION_RE.match(alias) or re.match(r"^v[0-9]+$", alias):
        raise ArtifactError(
            f"Alias {alias!r} looks like a version number; aliases must not start with 'v' "
            "followed only by digits."
        )
    return alias


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed reference: ``name`` plus either a version number or an alias."""

    name: str
    version: int | None = None
    alias: str | None = None  # 'latest' or a user alias; None when version is set

    @property
    def selector(self) -> str:
        return f"v{self.version}" if self.version is not None else (self.alias or LATEST)

    def __str__(self) -> str:
        return f"{SCHEME}{self.name}:{self.selector}"


def parse_ref(ref: str) -> ArtifactRef:
    """Parse ``art://name[:v3|:alias|:latest]`` (the ``art://`` prefix is optional)."""
    if not isinstance(ref, str) or not ref.strip():
        raise ArtifactError(f"Empty artifact reference {ref!r}; expected art://NAME[:VERSION|:ALIAS].")
    text = ref.strip()
    if text.startswith(SCHEME):
        text = text[len(SCHEME):]
    elif "://" in text:
        raise ArtifactError(
            f"{ref!r} is not an artifact URI; expected art://NAME[:VERSION|:ALIAS] "
            "(e.g. art://my-dataset:latest, art://my-dataset:v3, art://my-model:production)."
        )
    name, sep, sel = text.partition(":")
    validate_name(name)
    if not sep or sel == LATEST:
        return ArtifactRef(name, alias=LATEST)
    m = _VERSION_RE.match(sel)
    if m:
        return ArtifactRef(name, version=int(m.group(1)))
    if re.match(r"^v[0-9]+$", sel):
        raise ArtifactError(f"Invalid version {sel!r} in {ref!r}: versions count from v1.")
    if not _NAME_RE.match(sel) or ".." in sel:
        raise ArtifactError(f"Invalid version or alias {sel!r} in {ref!r}. {_HINT}")
    return ArtifactRef(name, alias=sel)


def tokenizer_to_uri(tokenizer: Any) -> str:
    """A URI naming a tokenizer: ``hf://org/name`` for a hub id, ``file:///abs/dir`` for a
    local directory, ``art://...`` kept as is; objects are asked for ``name_or_path``."""
    value = getattr(tokenizer, "name_or_path", None) or getattr(tokenizer, "path", None) or tokenizer
    text = str(value)
    if "://" in text:
        return text
    p = Path(text).expanduser()
    if p.exists():
        return p.resolve().as_uri()
    if re.match(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", text):
        return f"hf://{text}"
    return p.resolve().as_uri()
