"""The job store's records, each kind validated on read by one model and one reader.

Stoker writes every store file whole (temp + rename), so a record that is not JSON or does
not fit its model was damaged from outside: an edit, a partial copy, a failing disk. The
reader raises :class:`RecordError` naming the file and each bad field (exit 2), and never
hands half-typed data on, where it would surface later as a ``KeyError`` traceback in
whichever command touched it. ``stoker exp list``, ``latest`` and prefix lookup skip an
experiment with a damaged record (with a warning) instead of failing for all of them.

Unknown keys are kept (``extra="allow"``): a newer stoker may add fields to a record an
older one still reads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from stoker.errors import ConfigProblem, UserError

__all__ = ["DriverRecord", "ExitRecord", "ExperimentRecord", "RecordError", "SkippedRecord",
           "TaskRecord", "read_exit", "read_handle", "read_record"]

T = TypeVar("T")


class RecordError(UserError):
    """A job store file that cannot be read as its record kind (exit 2)."""

    def __init__(self, file: Path, problems: list[ConfigProblem], *,
                 experiment: Path | None = None, advice: str | None = None):
        self.file = Path(file)
        self.problems = problems
        self.experiment = experiment
        lines = [f"damaged job store record {self.file}:"]
        lines += [f"  - {p.path or '(the whole file)'}: {p.message}" for p in problems]
        if advice is None:
            advice = (f"Restore that file, or remove the experiment: rm -r {experiment} "
                      "(its run directories are elsewhere and stay)" if experiment else
                      "Restore or remove that file.")
        super().__init__("\n".join([*lines, advice]))


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class SweepRecord(_Record):
    """A sweep's own record of its points, in experiment.json."""

    keys: list[str]
    points: int = Field(ge=1)


class ExperimentRecord(_Record):
    """``<id>/experiment.json``: written after every task record (the launch's commit)."""

    id: str
    created: float
    tasks: list[str]
    """The task folders in the order they were added."""
    task_names: Optional[list[str]] = None
    """Their names (same order), to name a task whose record is missing."""
    title: str = ""
    name: Optional[str] = None
    mode: Literal["graph", "sequential", "parallel"] = "graph"
    detach: bool = False
    argv: list[str] = Field(default_factory=list)
    cwd: Optional[str] = None
    max_parallel: Optional[int] = Field(None, ge=1)
    sweep: Optional[SweepRecord] = None


class DriverRecord(_Record):
    """``<id>/driver.json``: the process that submits the waiting tasks (the launcher until
    it hands them to a background driver)."""

    pid: int
    create_time: float
    host: Optional[str] = None
    role: Literal["launcher", "driver"] = "driver"


class SkippedRecord(_Record):
    """``<id>/<task>/skipped.json``: why a task was never submitted."""

    reason: str
    time: Optional[float] = None


class ExitRecord(_Record):
    """``<id>/<task>/exit.json``: written by the job's wrapper (or a container's watcher)."""

    exit_code: int
    started: Any = None
    ended: Any = None


class _Handle(_Record):
    kind: str
    job_dir: str


class _ProcessHandle(_Handle):
    pid: int
    create_time: float
    host: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None


class _SlurmHandle(_Handle):
    job_id: str
    remote_job_dir: str


class _DockerHandle(_Handle):
    container_id: str


_HANDLES: dict[str, type[_Handle]] = {"local": _ProcessHandle, "detached": _ProcessHandle,
                                      "torchrun": _ProcessHandle, "slurm": _SlurmHandle,
                                      "docker": _DockerHandle}


@dataclass
class TaskRecord:
    """``<id>/<task>/task.json``: what the store keeps about one task (secrets masked)."""

    name: str
    folder: str
    program: list[str]
    workdir: str
    executor: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    kind: str = "command"
    run_dir: Optional[str] = None
    command: str = ""
    point: Optional[dict[str, str]] = None
    """A sweep point's swept values (key -> value as written)."""
    threads: Optional[int] = None
    """Threads the task was given when it shared this machine's cores."""

    @classmethod
    def from_json(cls, data: Any) -> TaskRecord:
        """Validated (a wrong type is a :class:`ValidationError`); unknown keys ignored."""
        return _adapter(cls).validate_python(data)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def read_record(path: Path, kind: type[T], *, experiment: Path | None = None) -> T | None:
    """The record in ``path`` as ``kind`` (a model or dataclass above), None when the file
    does not exist; anything else wrong with it is a :class:`RecordError` naming ``path``
    and the field (``experiment``: the folder to name in the advice)."""
    data = _load(path, experiment)
    return None if data is _MISSING else _validate(data, kind, path, experiment)


def read_handle(path: Path, *, experiment: Path | None = None) -> dict[str, Any] | None:
    """A task's ``handle.json`` as the dict its executor reads, checked for the fields that
    executor kind needs (a process's ``pid`` and start time, a Slurm job id, ...)."""
    data = _load(path, experiment)
    if data is _MISSING:
        return None
    base = _validate(data, _Handle, path, experiment)
    return _validate(data, _HANDLES.get(base.kind, _Handle), path, experiment).model_dump()


_MISSING = object()


def _load(path: Path, experiment: Path | None) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _MISSING
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(path, [ConfigProblem("", f"cannot be read ({e})")],
                          experiment=experiment) from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise RecordError(path, [ConfigProblem("", f"is not valid JSON ({e})")],
                          experiment=experiment) from None


def _validate(data: Any, kind: type[T], path: Path, experiment: Path | None) -> T:
    try:
        return _adapter(kind).validate_python(data)
    except ValidationError as exc:
        raise RecordError(path, problems(exc, kind), experiment=experiment) from None


def read_exit(path: Path, *, experiment: Path | None = None) -> ExitRecord | None:
    """A job's ``exit.json`` (None while it runs)."""
    return read_record(path, ExitRecord, experiment=experiment)


def problems(exc: ValidationError, kind: Any) -> list[ConfigProblem]:
    """``exc`` as the problems of a record of ``kind`` (launch.config's translation)."""
    from stoker.launch.config import validation_problems

    fields = list(getattr(kind, "model_fields", None) or getattr(kind, "__dataclass_fields__", {}))
    return validation_problems(exc, fields=fields, owner=getattr(kind, "__name__", "record"),
                               missing="missing (stoker always writes it)")
