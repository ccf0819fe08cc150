"""The job store: ``$STOKER_HOME/experiments/<id>/``, one folder per experiment.

Layout (atomic files only, so any number of processes may launch and query at once)::

    <id>/experiment.json          title, name, mode, detach, task order, argv, created,
                                  max_parallel, sweep (its keys and point count)
    <id>/driver.json              pid + start time of the process submitting pending tasks
    <id>/cancelled                `stoker exp cancel ID`: submit nothing more
    <id>/<task>/task.json         name, program, workdir, executor (masked), env (masked), ...
    <id>/<task>/config.yaml       the resolved config the task runs
    <id>/<task>/config.resolved.json  an entrypoint task's validated arguments, for its job
                                  to skip composing config.yaml again (launch.resolved)
    <id>/<task>/command.txt       exactly what runs (the executor's describe, masked)
    <id>/<task>/handle.json       the executor's handle, written once submitted
    <id>/<task>/skipped.json      never submitted (a dependency failed, or cancelled)
    <id>/<task>/logs/stdout.log, stderr.log

An experiment folder is created with an exclusive ``mkdir`` (two launches never share one)
and every file in it is written whole (temp + fsync + rename): a reader sees the old
version or the new one, never a torn one. No lock is needed because each file has one
writer at a time: the launcher, then the driver.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stoker.atomic import atomic_write_text
from stoker.errors import UserError

__all__ = ["JobStore", "TaskRecord"]

EXPERIMENT_FILE = "experiment.json"
TASK_FILE = "task.json"
HANDLE_FILE = "handle.json"
SKIPPED_FILE = "skipped.json"
DRIVER_FILE = "driver.json"
CANCELLED_FILE = "cancelled"


@dataclass
class TaskRecord:
    """What the store keeps about one task (secrets already masked)."""

    name: str
    folder: str
    program: list[str]
    workdir: str
    executor: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    kind: str = "command"
    run_dir: str | None = None
    command: str = ""
    point: dict[str, str] | None = None
    """A sweep point's swept values (key -> value as written)."""
    threads: int | None = None
    """Threads the task was given when it shared this machine's cores."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", text).strip("-.")
    return (s or "task")[:limit]


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:  # never written torn (atomic), so this is damage from outside
        raise UserError(f"{path} is not valid JSON ({e}); remove that experiment folder") from None


class JobStore:
    """Experiments and their tasks under ``root`` (default ``$STOKER_HOME/experiments``)."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            home = Path(os.environ.get("STOKER_HOME") or Path.home() / ".stoker").expanduser()
            root = home / "experiments"
        self.root = Path(root)

    # ------------------------------------------------------------------ experiments
    def new_id(self, title: str) -> str:
        """A fresh id: ``<title>-<YYYYmmdd-HHMMSS>-<4 hex>`` (not created yet)."""
        return f"{slug(title, 32)}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"

    def create(self, exp_id: str, meta: dict[str, Any]) -> Path:
        """Create the experiment folder (exclusively) and its experiment.json."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / exp_id
        path.mkdir()  # FileExistsError: another launch took this id; the caller picks anew
        _write_json(path / EXPERIMENT_FILE, {"id": exp_id, "created": time.time(), **meta})
        return path

    def path(self, exp_id: str) -> Path:
        return self.root / exp_id

    def experiment(self, exp_id: str) -> dict[str, Any]:
        data = _read_json(self.root / exp_id / EXPERIMENT_FILE)
        if data is None:
            raise UserError(self._unknown(exp_id))
        return data

    def list(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Experiments, newest first (folders still being created are left out)."""
        if not self.root.is_dir():
            return []
        found = []
        for d in self.root.iterdir():
            data = _read_json(d / EXPERIMENT_FILE) if d.is_dir() else None
            if data is not None:
                found.append(data)
        found.sort(key=lambda e: (e.get("created", 0), e["id"]), reverse=True)
        return found[:limit] if limit else found

    def find(self, ref: str) -> str:
        """The id that ``ref`` names: an id, a unique prefix of one, or ``latest``."""
        if ref == "latest":
            recent = self.list(limit=1)
            if not recent:
                raise UserError("no experiments yet: launch one with executor=detached (or "
                                "another executor) first")
            return recent[0]["id"]
        if (self.root / ref / EXPERIMENT_FILE).is_file():
            return ref
        matches = [e["id"] for e in self.list() if e["id"].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"'{ref}' matches {len(matches)} experiments: "
                            f"{', '.join(matches[:8])}; give more of the id")
        raise UserError(self._unknown(ref))

    def _unknown(self, ref: str) -> str:
        recent = [e["id"] for e in self.list(limit=8)]
        listing = (":\n  " + "\n  ".join(recent)) if recent else " (there are none yet)"
        return f"no experiment '{ref}' in {self.root}. Recent ones{listing}"

    def mark_cancelled(self, exp_id: str) -> None:
        atomic_write_text(self.root / exp_id / CANCELLED_FILE, f"{time.time()}\n")

    def is_cancelled(self, exp_id: str) -> bool:
        return (self.root / exp_id / CANCELLED_FILE).exists()

    def set_driver(self, exp_id: str, info: dict[str, Any]) -> None:
        _write_json(self.root / exp_id / DRIVER_FILE, info)

    def driver(self, exp_id: str) -> dict[str, Any] | None:
        return _read_json(self.root / exp_id / DRIVER_FILE)

    # ------------------------------------------------------------------------- tasks
    def task_dir(self, exp_id: str, folder: str) -> Path:
        return self.root / exp_id / folder

    def write_task(self, exp_id: str, record: TaskRecord) -> None:
        _write_json(self.task_dir(exp_id, record.folder) / TASK_FILE, asdict(record))

    def tasks(self, exp_id: str) -> list[TaskRecord]:
        """The experiment's tasks in the order they were added."""
        exp = self.experiment(exp_id)
        out = []
        for folder in exp.get("tasks", []):
            data = _read_json(self.task_dir(exp_id, folder) / TASK_FILE)
            if data is not None:
                out.append(TaskRecord.from_json(data))
        return out

    def task(self, exp_id: str, name: str) -> TaskRecord:
        tasks = self.tasks(exp_id)
        for t in tasks:
            if name in (t.name, t.folder):
                return t
        from stoker.config.targets import suggest

        raise UserError(f"experiment {exp_id} has no task '{name}'; its tasks: "
                        f"{', '.join(t.name for t in tasks)}.{suggest(name, [t.name for t in tasks])}")

    def set_handle(self, exp_id: str, folder: str, handle: dict[str, Any]) -> None:
        _write_json(self.task_dir(exp_id, folder) / HANDLE_FILE, handle)

    def handle(self, exp_id: str, folder: str) -> dict[str, Any] | None:
        return _read_json(self.task_dir(exp_id, folder) / HANDLE_FILE)

    def mark_skipped(self, exp_id: str, folder: str, reason: str) -> None:
        _write_json(self.task_dir(exp_id, folder) / SKIPPED_FILE, {"reason": reason,
                                                                   "time": time.time()})

    def skipped(self, exp_id: str, folder: str) -> str | None:
        data = _read_json(self.task_dir(exp_id, folder) / SKIPPED_FILE)
        return None if data is None else str(data.get("reason", "skipped"))
