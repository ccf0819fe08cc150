"""Provenance: who made an artifact, from what code and config, using which inputs, and
where that is reported.

A *run scope* collects the artifacts a run uses (resolved through ``${art:...}``, or loaded
with ``load``/``from_uri``) so that whatever the run publishes records them as inputs --
on the *produced* artifact, never on the input. Outside an explicit scope the process itself
is the run (a CLI command is one process).

A *lineage tracker* mirrors every publish into an experiment tracker (W&B, MLflow: see
:mod:`stoker.track.lineage`). This module owns the protocol and the process default, so
the artifacts layer records lineage without importing any tracker: trackers plug in from
above with :func:`set_lineage_tracker`.

:func:`save_artifact` and :func:`load_artifact` are the two moments lineage is recorded;
``Artifact.save``/``from_uri``/``load`` call them, so the data classes in
:mod:`stoker.artifacts.types` carry no side effects of their own.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from stoker.artifacts.types import Artifact, TrackingInfo

A = TypeVar("A", bound="Artifact")


@dataclass
class RunInfo:
    run_id: str
    recipe: str | None = None
    config_hash: str | None = None
    command: str | None = None
    used: list[str] = field(default_factory=list)
    git_commit: str | None = None
    git_dirty: bool | None = None

    def record_use(self, uri: str) -> None:
        if uri and uri not in self.used:
            self.used.append(uri)


_SESSION = RunInfo(run_id=f"proc-{uuid.uuid4().hex[:12]}")
_CURRENT: contextvars.ContextVar[RunInfo | None] = contextvars.ContextVar("stoker_run", default=None)


def current_run() -> RunInfo:
    """The innermost active run scope, or the process-wide one."""
    return _CURRENT.get() or _SESSION


@contextlib.contextmanager
def run_scope(run_id: str | None = None, *, recipe: str | None = None,
              config: Any = None, command: str | None = None) -> Iterator[RunInfo]:
    """Scope a run: artifacts used inside are recorded as inputs of what it publishes."""
    info = RunInfo(run_id=run_id or f"run-{uuid.uuid4().hex[:12]}", recipe=recipe,
                   config_hash=config_hash(config) if config is not None else None,
                   command=command)
    token = _CURRENT.set(info)
    try:
        yield info
    finally:
        _CURRENT.reset(token)


def record_use(uri: str | None) -> None:
    """Note that the current run consumed ``uri`` (an exact ``art://name:vN``)."""
    if uri:
        current_run().record_use(uri)


def reset_session() -> None:
    """Start a fresh process-wide run (tests; long-lived notebooks)."""
    global _SESSION
    _SESSION = RunInfo(run_id=f"proc-{uuid.uuid4().hex[:12]}")


def config_hash(config: Any) -> str:
    """SHA-256 of the resolved config as canonical JSON (key order does not matter)."""
    if hasattr(config, "_metadata") and hasattr(config, "_get_node"):  # an OmegaConf node
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@lru_cache(maxsize=8)
def git_info(cwd: str | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout at ``cwd``; (None, None) outside one."""
    cwd = cwd or os.getcwd()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return commit.stdout.strip() or None, bool(status.stdout.strip())


def tracking_info(run: RunInfo | None = None, **overrides: Any) -> "TrackingInfo":
    """The :class:`~stoker.artifacts.types.TrackingInfo` for an artifact published now."""
    from stoker import __version__
    from stoker.artifacts.types import TrackingInfo

    run = run or current_run()
    commit, dirty = (run.git_commit, run.git_dirty) if run.git_commit else git_info(None)
    tracker = get_lineage_tracker()
    fields: dict[str, Any] = dict(
        run_id=run.run_id, recipe=run.recipe, config_hash=run.config_hash,
        stoker_version=__version__, git_commit=commit, git_dirty=dirty,
        command=run.command or " ".join(shlex.quote(a) for a in sys.argv),
        host=socket.gethostname(), used_artifacts=list(run.used),
    )
    if tracker.is_active():
        fields.update(tracker=tracker.name, tracker_run_id=tracker.get_run_id(),
                      tracker_url=tracker.get_run_url())
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return TrackingInfo(**fields)


# -- lineage trackers: the extension point ----------------------------------------------
@runtime_checkable
class LineageTracker(Protocol):
    """What stoker asks of a tracker when an artifact is published."""

    name: str

    def is_active(self) -> bool: ...
    def get_run_id(self) -> str | None: ...
    def get_run_url(self) -> str | None: ...
    def log_artifact(self, artifact: Any, name: str, used_artifacts: list[str]) -> None: ...
    def use_artifact(self, artifact: Any) -> None: ...


class NoOpTracker:
    """Tracks nothing; the registry still records lineage."""

    name = "none"

    def is_active(self) -> bool:
        return False

    def get_run_id(self) -> str | None:
        return None

    def get_run_url(self) -> str | None:
        return None

    def log_artifact(self, artifact: Any, name: str, used_artifacts: list[str]) -> None:
        return None

    def use_artifact(self, artifact: Any) -> None:
        return None


_TRACKER: LineageTracker | None = None


def get_lineage_tracker() -> LineageTracker:
    """The tracker set with :func:`set_lineage_tracker`, else a :class:`NoOpTracker`."""
    return _TRACKER if _TRACKER is not None else NoOpTracker()


def set_lineage_tracker(tracker: LineageTracker | None) -> None:
    """Set (or with None, clear) the process-default tracker."""
    global _TRACKER
    _TRACKER = tracker


# -- the two moments lineage is recorded ---------------------------------------------------
def save_artifact(artifact: A, name: str, *, registry: Any = None, mode: str = "copy",
                  aliases: Iterable[str] = ()) -> A:
    """Publish ``artifact`` as a new version of ``name`` (see ``Artifact.save``), then mirror
    the publish, with the inputs its run used, into the active lineage tracker."""
    from stoker.artifacts.registry import resolve_registry

    saved = resolve_registry(registry).publish(artifact, name, mode=mode, aliases=aliases)
    object.__setattr__(artifact, "name", saved.name)
    object.__setattr__(artifact, "version", saved.version)
    object.__setattr__(artifact, "producer", saved.producer)
    tracker = get_lineage_tracker()
    if tracker.is_active():
        tracker.log_artifact(saved, name=saved.name,
                             used_artifacts=saved.producer.used_artifacts if saved.producer else [])
    return saved


def load_artifact(cls: type[A], uri: str, *, registry: Any = None) -> A:
    """Load ``art://name:<version|alias|latest>`` as ``cls`` and record it as an input of
    the current run."""
    from stoker.artifacts.registry import resolve_registry

    art = resolve_registry(registry).load(uri, cls=cls)
    record_use(art.uri)
    return art
