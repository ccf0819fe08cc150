"""The job store: ``$STOKER_HOME/experiments/<id>/``, one folder per experiment.

Layout (atomic files only, so any number of processes may launch and query at once)::

    <id>/driver.json              pid + start time + host of the process that submits the
                                  waiting tasks: the launcher, written before any task
                                  record, then the background driver it hands them to
    <id>/<task>/task.json         name, program, workdir, executor (masked), env (masked), ...
    <id>/<task>/config.yaml       the resolved config the task runs
    <id>/<task>/config.resolved.json  an entrypoint task's validated arguments, for its job
                                  to skip composing config.yaml again (launch.resolved)
    <id>/<task>/command.txt       exactly what runs (the executor's describe, masked)
    <id>/experiment.json          title, name, mode, detach, task order and names, argv,
                                  created, max_parallel, sweep (its keys and point count);
                                  written after every task record: the launch's commit
    <id>/cancelled                `stoker exp cancel ID`: submit nothing more
    <id>/<task>/handle.json       the executor's handle, written once submitted
    <id>/<task>/skipped.json      never submitted (a dependency failed, or cancelled)
    <id>/<task>/logs/stdout.log, stderr.log

The order of the writes is what makes a launcher killed at any moment leave a store that
reads true: a folder without experiment.json is a launch that never finished recording
(nothing was submitted from it, since submission starts after the commit) and is no
experiment; a committed experiment has every task record; a task with no handle whose
submitter (driver.json) is dead will never start, and reads LOST (launch.driver).

An experiment folder is created with an exclusive ``mkdir`` (two launches never share one)
and every file in it is written whole (temp + fsync + rename): a reader sees the old
version or the new one, never a torn one. No lock is needed because each file has one
writer at a time: the launcher, then the driver (which records itself in driver.json as it
starts, as its launcher does just after starting it: the same content). Every record is
validated on read (:mod:`stoker.launch.records`): a damaged one is a
:class:`~stoker.launch.records.RecordError` naming the file and the field.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stoker.atomic import atomic_write_text
from stoker.errors import ConfigProblem, UserError
from stoker.launch.records import (DriverRecord, ExperimentRecord, RecordError, SkippedRecord,
                                   TaskRecord, read_handle, read_record)

__all__ = ["JobStore", "RecordError", "TaskRecord"]

EXPERIMENT_FILE = "experiment.json"
TASK_FILE = "task.json"
HANDLE_FILE = "handle.json"
SKIPPED_FILE = "skipped.json"
DRIVER_FILE = "driver.json"
CANCELLED_FILE = "cancelled"


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", text).strip("-.")
    return (s or "task")[:limit]


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


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

    def create(self, exp_id: str, owner: dict[str, Any]) -> Path:
        """Reserve the experiment folder (exclusively) and record ``owner``, the launching
        process, as its submitter: before any task record, so whenever that process dies
        from here on, a reader can tell that nothing more will be submitted."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / exp_id
        path.mkdir()  # FileExistsError: another launch took this id; the caller picks anew
        self.set_driver(exp_id, owner)
        return path

    def commit(self, exp_id: str, meta: dict[str, Any]) -> None:
        """Write experiment.json, after every task record: from now on the folder is an
        experiment (and only from now on may a task of it be submitted)."""
        _write_json(self.root / exp_id / EXPERIMENT_FILE,
                    {"id": exp_id, "created": time.time(), **meta})

    def path(self, exp_id: str) -> Path:
        return self.root / exp_id

    def experiment(self, exp_id: str) -> dict[str, Any]:
        """experiment.json, validated (a damaged one: :class:`RecordError`)."""
        data = self._experiment_file(self.root / exp_id)
        if data is None:
            raise UserError(self._uncommitted(exp_id) if (self.root / exp_id).is_dir()
                            else self._unknown(exp_id))
        return data

    def _experiment_file(self, folder: Path) -> dict[str, Any] | None:
        rec = read_record(folder / EXPERIMENT_FILE, ExperimentRecord, experiment=folder)
        if rec is None:
            return None
        if rec.id != folder.name:
            raise RecordError(folder / EXPERIMENT_FILE, [ConfigProblem(
                "id", f"is {rec.id!r}, but the file is in the folder of {folder.name!r} "
                "(a copied experiment folder?)")], experiment=folder)
        return rec.model_dump()

    def list(self, limit: int | None = None, *,
             skipped: list[UserError] | None = None) -> list[dict[str, Any]]:
        """Experiments, newest first. Folders still being created are left out; one whose
        experiment.json is damaged, or whose launcher died before it was recorded, is left
        out too, its reason appended to ``skipped`` (the caller warns)."""
        if not self.root.is_dir():
            return []
        found = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir():
                continue
            try:
                data = self._experiment_file(d)
            except RecordError as e:
                if skipped is not None:
                    skipped.append(e)
                continue
            if data is not None:
                found.append(data)
            elif skipped is not None and self._abandoned(d.name):
                skipped.append(UserError(self._uncommitted(d.name)))
        found.sort(key=lambda e: (e["created"], e["id"]), reverse=True)
        return found[:limit] if limit else found

    def find(self, ref: str, *, skipped: list[UserError] | None = None) -> str:
        """The id that ``ref`` names: an id, a unique prefix of one, or ``latest``
        (experiments skipped on the way are appended to ``skipped``, see :meth:`list`)."""
        seen: list[UserError] = []
        try:
            return self._find(ref, seen)
        finally:
            if skipped is not None:
                skipped.extend(seen)

    def _find(self, ref: str, skipped: list[UserError]) -> str:
        if ref == "latest":
            recent = self.list(limit=1, skipped=skipped)
            if not recent:
                raise UserError("no experiments yet: launch one with executor=detached (or "
                                "another executor) first")
            return str(recent[0]["id"])
        if ref and "/" not in ref and ref not in (".", "..") and (self.root / ref).is_dir():
            self.experiment(ref)  # damaged or never committed: say so, exit 2
            return ref
        matches = [e["id"] for e in self.list(skipped=skipped) if e["id"].startswith(ref)]
        if len(matches) == 1:
            return str(matches[0])
        if len(matches) > 1:
            raise UserError(f"'{ref}' matches {len(matches)} experiments: "
                            f"{', '.join(matches[:8])}; give more of the id")
        for e in skipped:  # the only match is damaged: that is the answer
            if isinstance(e, RecordError) and e.experiment is not None \
                    and e.experiment.name.startswith(ref):
                skipped.remove(e)
                raise e
        raise UserError(self._unknown(ref))

    def _unknown(self, ref: str) -> str:
        recent = [e["id"] for e in self.list(limit=8)]
        listing = (":\n  " + "\n  ".join(recent)) if recent else " (there are none yet)"
        return f"no experiment '{ref}' in {self.root}. Recent ones{listing}"

    def _abandoned(self, exp_id: str) -> bool:
        """A folder without experiment.json whose launcher is gone (it never will have one)."""
        try:
            owner = self.driver(exp_id)
        except RecordError:
            return True
        if owner is None:
            return False  # between mkdir and the owner record, or no stoker folder at all
        from stoker.launch.executors.process import owner_alive

        return not owner_alive(owner)

    def _uncommitted(self, exp_id: str) -> str:
        path = self.root / exp_id
        if not self._abandoned(exp_id):
            return (f"experiment {exp_id} is still being launched (its launcher is writing "
                    "its task records); ask again in a moment")
        return (f"{path} is not an experiment: its launcher stopped before recording it (no "
                f"{EXPERIMENT_FILE}), so nothing of it was submitted. Launch it again, and "
                f"remove that folder: rm -r {path}")

    def mark_cancelled(self, exp_id: str) -> None:
        atomic_write_text(self.root / exp_id / CANCELLED_FILE, f"{time.time()}\n")

    def is_cancelled(self, exp_id: str) -> bool:
        return (self.root / exp_id / CANCELLED_FILE).exists()

    def set_driver(self, exp_id: str, info: dict[str, Any]) -> None:
        _write_json(self.root / exp_id / DRIVER_FILE, info)

    def driver(self, exp_id: str) -> dict[str, Any] | None:
        """driver.json, validated: who submits the waiting tasks (None: not recorded)."""
        rec = read_record(self.root / exp_id / DRIVER_FILE, DriverRecord,
                          experiment=self.root / exp_id)
        return None if rec is None else rec.model_dump()

    # ------------------------------------------------------------------------- tasks
    def task_dir(self, exp_id: str, folder: str) -> Path:
        return self.root / exp_id / folder

    def write_task(self, exp_id: str, record: TaskRecord) -> None:
        _write_json(self.task_dir(exp_id, record.folder) / TASK_FILE, asdict(record))

    def tasks(self, exp_id: str) -> list[TaskRecord]:
        """The experiment's tasks in the order they were added, every one validated. A
        task listed in experiment.json without its record (a store written by an older
        stoker whose launcher died mid-way, or files removed) is a :class:`RecordError`
        naming each such task: no command may act on the others as if they were all."""
        exp = self.experiment(exp_id)
        folder_of_exp = self.root / exp_id
        names = exp.get("task_names") or []
        out, missing = [], []
        for i, folder in enumerate(exp["tasks"]):
            path = self.task_dir(exp_id, folder) / TASK_FILE
            rec = read_record(path, TaskRecord, experiment=folder_of_exp)
            if rec is None:
                missing.append(names[i] if i < len(names) else folder)
                continue
            if rec.folder != folder:
                    raise RecordError(path, [ConfigProblem("folder", f"is {rec.folder!r}, but the "
                                  f"record is in the folder {folder!r}")], experiment=folder_of_exp)
            out.append(rec)
        if missing:
            what = "sweep point" if exp.get("sweep") else "task"
            argv = exp.get("argv") or []
            again = f"`{_shell(argv)}`" if argv else "the command that launched it"
            raise RecordError(folder_of_exp / EXPERIMENT_FILE, [ConfigProblem(
                "tasks", f"lists {len(exp['tasks'])} tasks, but {len(missing)} have no "
                f"{TASK_FILE}: {what}{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} cannot be run again from the store")],
                experiment=folder_of_exp,
                advice=f"Launch it again with {again}, or remove it: rm -r {folder_of_exp}")
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
        """handle.json, validated for its executor kind (None: not submitted)."""
        return read_handle(self.task_dir(exp_id, folder) / HANDLE_FILE,
                           experiment=self.root / exp_id)

    def mark_skipped(self, exp_id: str, folder: str, reason: str) -> None:
        _write_json(self.task_dir(exp_id, folder) / SKIPPED_FILE, {"reason": reason,
                                                                   "time": time.time()})

    def skipped(self, exp_id: str, folder: str) -> str | None:
        rec = read_record(self.task_dir(exp_id, folder) / SKIPPED_FILE, SkippedRecord,
                          experiment=self.root / exp_id)
        return None if rec is None else rec.reason


def _shell(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)
