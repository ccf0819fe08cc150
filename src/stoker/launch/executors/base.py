"""The executor interface: describe, submit, status, cancel and logs of one task.

An executor is built from its config (:mod:`stoker.launch.config`); everything it needs to
find a job again is in the JSON handle that ``submit`` returns and the job store keeps, so
a new process (``stoker exp status`` tomorrow) reconnects through ``status(handle)``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Sequence

from stoker.launch.task import Task

__all__ = ["Executor", "JobState", "JobStatus"]


class JobState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    LOST = "LOST"
    """Never submitted, and never will be: the process that was to submit it (the launcher
    or its background driver) is gone. Only the job store says this, never an executor."""

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST)


@dataclass
class JobStatus:
    state: JobState
    exit_code: int | None = None
    detail: str = ""


class Executor(ABC):
    kind: ClassVar[str]
    supports_after: ClassVar[bool] = False
    """True when ``submit(after=...)`` makes the scheduler wait (Slurm afterok); otherwise
    the experiment submits a task once its dependencies have succeeded."""
    outlives_launcher: ClassVar[bool] = True
    """False when the job belongs to the terminal that launched it: Ctrl-C while following
    it cancels it (local, torchrun); detached and scheduler jobs keep running."""

    def __init__(self, config: Any):
        self.config = config

    def check(self, task: Task) -> None:
        """Refuse a task this executor cannot run here (raise UserError) before anything is
        written or submitted; also run before ``--dryrun`` output."""

    @abstractmethod
    def describe(self, task: Task) -> str:
        """Exactly what would run: the command line, sbatch script or docker command."""

    @abstractmethod
    def submit(self, task: Task, *, after: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        """Start the task; return a JSON-serialisable handle."""

    def submit_array(self, tasks: list[Task], *, max_parallel: int | None = None
                     ) -> list[dict[str, Any]]:
        """Submit independent tasks together; one handle per task, in order.

        An executor that overrides this (Slurm: ONE job array) gets every group of
        independent tasks sharing its config this way; ``max_parallel`` caps how many run
        at once (Slurm's ``--array=0-N%M``). This default is never called by experiments.
        """
        return [self.submit(t) for t in tasks]

    def describe_array(self, tasks: list[Task], *, max_parallel: int | None = None) -> str:
        """What :meth:`submit_array` would submit (``--dryrun``)."""
        return "\n\n".join(self.describe(t) for t in tasks)

    @abstractmethod
    def status(self, handle: dict[str, Any]) -> JobStatus:
        """Where the job stands; must work from a process other than the submitter."""

    @abstractmethod
    def cancel(self, handle: dict[str, Any]) -> None:
        """Stop the job (no-op when it already ended)."""

    @abstractmethod
    def log_files(self, handle: dict[str, Any]) -> list[Path]:
        """Local files holding the job's output, stdout first."""
