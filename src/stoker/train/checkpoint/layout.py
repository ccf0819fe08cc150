"""Where checkpoints live and which of them count: step names, commit markers, discovery.

A run keeps its checkpoints in ``<run>/checkpoints/step-NNNNNNNN/``; a step directory counts
only when its commit marker (``COMMITTED``, written last) is present and valid. Every caller
that looks for a checkpoint (the trainer when resuming, the run directory planner, model
publishing, ``stoker eval`` and ``stoker generate``) goes through :func:`resolve_checkpoint`
or :func:`find_latest` here, so "which checkpoint" has one answer everywhere.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, overload

from stoker.errors import CheckpointError

__all__ = [
    "CHECKPOINTS_DIR",
    "FORMAT",
    "MARKER",
    "STATE_FILE",
    "committed",
    "find_latest",
    "has_step_dirs",
    "is_committed",
    "is_step_dir",
    "read_marker",
    "resolve_checkpoint",
    "step_dir_name",
]

MARKER = "COMMITTED"
STATE_FILE = "state.json"
FORMAT = "stoker-checkpoint/1"
CHECKPOINTS_DIR = "checkpoints"  # the folder of a run directory that holds the step dirs
STEP_RE = re.compile(r"^step-(\d{8,})$")
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def step_dir_name(step: int) -> str:
    """``step-00000100``: zero-padded so that names sort in step order."""
    return f"step-{step:08d}"


def is_step_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is named like a step directory (committed or not)."""
    return STEP_RE.match(Path(path).name) is not None


def read_marker(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The parsed commit marker of a step directory, or None when absent or unreadable."""
    p = Path(path) / MARKER
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    m = STEP_RE.match(Path(path).name)
    if m and data.get("step") != int(m.group(1)):
        return None
    if not isinstance(data.get("files"), dict):
        return None
    return data


def is_committed(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a step directory with a valid commit marker."""
    return read_marker(path) is not None


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every step-named directory under ``root``, committed or not."""
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for e in entries:
        m = STEP_RE.match(e.name)
        if m and e.is_dir():
            out.append((int(m.group(1)), Path(e.path)))
    out.sort()
    return out


def has_step_dirs(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` holds any step directory, even one still being written.

    The run directory planner uses it to tell "this run has started" (resume it) from
    "nothing here yet", before it knows whether a checkpoint was completed.
    """
    return bool(step_dirs(Path(root)))


def committed(root: Path) -> list[tuple[int, Path, dict[str, Any]]]:
    """``(step, path, marker)`` of the committed step directories under ``root``, oldest first."""
    out = []
    for step, p in step_dirs(root):
        marker = read_marker(p)
        if marker is not None:
            out.append((step, p, marker))
    return out


def find_latest(root: str | os.PathLike[str]) -> Path | None:
    """Highest-step committed checkpoint under ``root`` (a ``checkpoints/`` directory)."""
    c = committed(Path(root))
    return c[-1][1] if c else None


@overload
def resolve_checkpoint(path: str | os.PathLike[str]) -> Path: ...


@overload
def resolve_checkpoint(path: str | os.PathLike[str], *, missing_ok: bool) -> Path | None: ...


def resolve_checkpoint(path: str | os.PathLike[str], *, missing_ok: bool = False) -> Path | None:
    """A step directory from a path that is one, a ``checkpoints/`` dir, or a run dir.

    A path named like a step directory (or holding a marker) is returned as it is, so that
    loading it reports a missing or damaged marker instead of silently picking another step.
    Otherwise the latest committed step directory in ``path`` or ``path/checkpoints``;
    when there is none, CheckpointError, or None with ``missing_ok=True`` (a run that has
    not saved yet, for the trainer's resume).
    """
    p = Path(path)
    if STEP_RE.match(p.name) or (p / MARKER).exists():
        return p
    for root in (p, p / CHECKPOINTS_DIR):
        latest = find_latest(root)
        if latest is not None:
            return latest
    if missing_ok:
        return None
    if not p.exists():
        raise CheckpointError(f"checkpoint path {p} does not exist")
    raise CheckpointError(
        f"no committed checkpoint found in {p} (looked for step-NNNNNNNN/ directories with a "
        f"{MARKER} marker in {p} and {p / CHECKPOINTS_DIR})"
    )
