"""Artifact types: "an artifact is a path with typed metadata".

Every artifact is a Pydantic model with a ``path`` (a local :class:`~pathlib.Path` or an
fsspec URL kept as a string, never mangled) plus typed fields. Subclasses -- built in or a
user's own -- register themselves by class name, so a stored record comes back as the same
class. Records are JSON only; the stored ``type`` is looked up in that table and never
imported, so reading metadata cannot execute code.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, ClassVar, Iterable, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError
from typing_extensions import Annotated, Self

from stoker.errors import ArtifactError

PIPE_FORMAT = "stoker.artifact/v1"
_TYPES: dict[str, type["Artifact"]] = {}


def _coerce_path(value: Any) -> Any:
    if isinstance(value, str):
        return value if "://" in value else Path(value)
    return value


def _ser_path(value: Any) -> Any:
    return None if value is None else str(value)


ArtifactPath = Annotated[Union[Path, str], BeforeValidator(_coerce_path), PlainSerializer(_ser_path)]
"""A local path (``Path``) or an fsspec URL (``str``: ``s3://bucket/x`` stays intact)."""


class InputDatasetInfo(BaseModel):
    """A source dataset that went into an artifact (for lineage)."""

    model_config = ConfigDict(extra="forbid")
    uri: str
    name: str | None = None
    split: str | None = None
    subset: str | None = None
    weight: float | None = None
    num_rows: int | None = None
    size_bytes: int | None = None
    sha256: str | None = None


class TrackingInfo(BaseModel):
    """What produced an artifact: run, recipe, config hash, code version, inputs used."""

    model_config = ConfigDict(extra="forbid")
    run_id: str | None = None
    recipe: str | None = None
    config_hash: str | None = None
    stoker_version: str | None = None
    git_commit: str | None = None  # the user's project's repository, never stoker's checkout
    git_dirty: bool | None = None
    code_sha256: str | None = None  # the user's code (stoker.artifacts.code_version), git or not
    command: str | None = None
    host: str | None = None
    used_artifacts: list[str] = Field(default_factory=list)
    tracker: str | None = None
    tracker_run_id: str | None = None
    tracker_url: str | None = None


class Artifact(BaseModel):
    """Base artifact: a path plus metadata. Subclass it to add typed fields.

    ``name`` and ``version`` are set once the artifact is saved (``art://name:vN``).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    path: ArtifactPath
    type: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    producer: TrackingInfo | None = None
    name: str | None = None
    version: int | None = None
    #: fields of a stored subclass that is not importable here (kept so nothing is lost)
    extra_fields: dict[str, Any] = Field(default_factory=dict, repr=False)

    _PATH_FIELDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _TYPES[cls.__name__] = cls

    def model_post_init(self, __context: Any) -> None:
        if not self.type:
            object.__setattr__(self, "type", type(self).__name__)

    # -- identity ----------------------------------------------------------------------
    @property
    def uri(self) -> str | None:
        """``art://name:vN`` once saved, else None."""
        if self.name is None or self.version is None:
            return None
        return f"art://{self.name}:v{self.version}"

    # -- registry (the lineage side effects live in stoker.artifacts.provenance) ----------
    def save(self, name: str | None = None, *, registry: Any = None, mode: str = "copy",
             aliases: Iterable[str] = ()) -> Self:
        """Publish a new version (``v1``, ``v2``, ...) of ``name`` and return the saved artifact.

        ``mode="copy"`` copies the data into the registry; ``"reference"`` records the
        path, metadata and manifest only. The producing run (see
        :mod:`stoker.artifacts.provenance`) and the artifacts it used are recorded as lineage.
        """
        from stoker.artifacts.provenance import save_artifact

        return save_artifact(self, name or type(self).__name__, registry=registry, mode=mode,
                             aliases=aliases)

    @classmethod
    def from_uri(cls, uri: str, *, registry: Any = None) -> Self:
        """Load ``art://name:latest``, ``art://name:v3`` or ``art://name:alias``."""
        from stoker.artifacts.provenance import load_artifact

        return load_artifact(cls, uri, registry=registry)

    @classmethod
    def load(cls, path: str | Path | None = None, *, registry: Any = None) -> Self:
        """Load from a directory (its ``.stoker-artifact.json``), a JSON file, an ``art://``
        URI, or -- with no argument -- the JSON piped on stdin by ``print_step_complete``."""
        if path is None:
            if sys.stdin is None or sys.stdin.isatty():
                raise ArtifactError(
                    f"{cls.__name__}.load() with no path reads an artifact piped on stdin, "
                    "but stdin is a terminal. Pipe a step into this one "
                    "(`stoker data prepare ... | stoker train ...`) or pass a path or art:// URI."
                )
            art = select_from_stream(sys.stdin.read(), cls, source="stdin")
        elif isinstance(path, str) and path.startswith("art://"):
            return cls.from_uri(path, registry=registry)
        else:
            p = Path(path)
            target = p / ".stoker-artifact.json" if p.is_dir() else p
            if not target.is_file():
                raise ArtifactError(
                    f"No artifact metadata at {target}. A saved artifact's directory holds "
                    "'.stoker-artifact.json'; or pass the JSON file printed by a step."
                )
            art = select_from_stream(target.read_text(encoding="utf-8"), cls, source=str(target))
        from stoker.artifacts.provenance import record_use

        if art.uri:
            record_use(art.uri)
        return art

    # -- JSON --------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (subclass fields included)."""
        data = self.model_dump(mode="json", exclude={"extra_fields"})
        data.update(self.extra_fields)
        return data

    def to_pipe_json(self) -> str:
        """The one line that steps print on stdout when piped, and ``load()`` reads."""
        return json.dumps({"format": PIPE_FORMAT, "uri": self.uri, "artifact": self.to_record()},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_record(cls, record: dict[str, Any], *, source: str = "record") -> Self:
        """Validate a stored record into ``cls`` or the stored (registered) subclass."""
        if not isinstance(record, dict):
            raise ArtifactError(f"Artifact metadata in {source} is not a JSON object.")
        stored = record.get("type") or "Artifact"
        target = _TYPES.get(stored) if isinstance(stored, str) else None
        data = dict(record)
        if target is None:
            if cls is not Artifact:
                raise ArtifactError(
                    f"{source} holds a {stored!r} artifact, not a {cls.__name__}. Load it with "
                    f"stoker.Artifact (or import the module defining {stored!r} first)."
                )
            known = set(Artifact.model_fields)
            extra = {k: v for k, v in data.items() if k not in known}
            data = {k: v for k, v in data.items() if k in known}
            data["extra_fields"] = {**data.get("extra_fields", {}), **extra}
            target = Artifact
        elif not issubclass(target, cls):
            raise ArtifactError(
                f"{source} holds a {stored} artifact, not a {cls.__name__}; "
                f"use {stored}.load/from_uri or stoker.Artifact."
            )
        try:
            return target.model_validate(data)  # type: ignore[return-value]
        except ValidationError as e:
            raise ArtifactError(f"Invalid {stored} metadata in {source}:\n{e}") from e


_TYPES["Artifact"] = Artifact


def _drop_ellipsis(value: Any) -> Any:
    # ``source_datasets=[...]`` is how docs write "fill in later": accept it as empty.
    if isinstance(value, list):
        return [v for v in value if v is not Ellipsis]
    return value


SourceList = Annotated[list[InputDatasetInfo], BeforeValidator(_drop_ellipsis)]


class DataBlendsArtifact(Artifact):
    """Tokenized data (one or more blended sources)."""

    total_tokens: int | None = None
    total_sequences: int | None = None
    source_datasets: SourceList = Field(default_factory=list)
    tokenizer_uri: str | None = None
    blend_path: ArtifactPath | None = None


class PretrainBlendsArtifact(DataBlendsArtifact):
    """Pretraining data with train/valid/test splits."""

    train_path: ArtifactPath | None = None
    valid_path: ArtifactPath | None = None
    test_path: ArtifactPath | None = None
    split_tokens: dict[str, int] = Field(default_factory=dict)


class SFTDataArtifact(DataBlendsArtifact):
    """Packed supervised fine-tuning data."""

    pack_size: int | None = None
    training_path: ArtifactPath | None = None
    validation_path: ArtifactPath | None = None
    test_path: ArtifactPath | None = None


class SplitJsonlDataArtifact(Artifact):
    """Train/valid/test JSONL splits (e.g. RL prompts)."""

    train_path: ArtifactPath | None = None
    valid_path: ArtifactPath | None = None
    test_path: ArtifactPath | None = None
    source_datasets: SourceList = Field(default_factory=list)
    num_rows: dict[str, int] = Field(default_factory=dict)


class ModelArtifact(Artifact):
    """A model checkpoint with the step and metrics it was saved at."""

    loss: float | None = None
    step: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    architecture: str | None = None
    tokenizer_uri: str | None = None


# -- the one pipe format ---------------------------------------------------------------
def parse_stream(text: str, *, source: str = "stdin") -> list[dict[str, Any]]:
    """Parse JSON lines written by :func:`print_step_complete`; anything else is an error."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ArtifactError(
                f"{source}:{lineno}: expected one artifact JSON line per artifact "
                f"(format {PIPE_FORMAT!r}), got {line[:80]!r}."
            ) from None
        if not isinstance(obj, dict) or obj.get("format") != PIPE_FORMAT or not isinstance(obj.get("artifact"), dict):
            raise ArtifactError(f"{source}:{lineno}: not a stoker artifact line (format {PIPE_FORMAT!r}).")
        out.append(obj)
    return out


def select_from_stream(text: str, cls: type[Artifact], *, source: str) -> Any:
    envelopes = parse_stream(text, source=source)
    if not envelopes:
        raise ArtifactError(f"No artifact found on {source}: the previous step printed nothing.")
    matches = []
    for env in envelopes:
        stored = _TYPES.get(env["artifact"].get("type", ""), None)
        if cls is Artifact or (stored is not None and issubclass(stored, cls)):
            matches.append(env)
    if not matches:
        kinds = ", ".join(e["artifact"].get("type", "?") for e in envelopes)
        raise ArtifactError(f"{source} carries {kinds}, none of which is a {cls.__name__}.")
    if len(matches) > 1:
        uris = ", ".join(str(e.get("uri")) for e in matches)
        raise ArtifactError(
            f"{source} carries {len(matches)} {cls.__name__} artifacts ({uris}); pass the one "
            "you want explicitly."
        )
    return cls.from_record(matches[0]["artifact"], source=source)


def print_step_complete(artifacts: Artifact | dict[str, Artifact] | Iterable[Artifact], *,
                        title: str | None = None, file: IO[str] | None = None) -> None:
    """End-of-step message. Piped: one JSON line per artifact (what ``load()`` reads).
    On a terminal: a short human summary. This is the one place artifacts print."""
    out = file if file is not None else sys.stdout
    if isinstance(artifacts, Artifact):
        items = [artifacts]
    elif isinstance(artifacts, dict):
        items = list(artifacts.values())
    else:
        items = list(artifacts)
    tty = bool(getattr(out, "isatty", lambda: False)())
    if not tty:
        for art in items:
            out.write(art.to_pipe_json() + "\n")
        out.flush()
        return
    out.write(f"{title or 'Step complete'}\n")
    for art in items:
        out.write(f"  {art.type}: {art.uri or '(not saved)'}  path={art.path}\n")
    out.flush()
