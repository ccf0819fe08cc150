"""A task: one command line to run somewhere, with its folder in the job store.

What runs elsewhere is always a command line (``python -m stoker train JOBDIR/config.yaml
--yes`` or ``script.py -c JOBDIR/config.yaml --yes executor=local``), never a pickled
function: a job can be read, re-run by hand, and shipped to another machine.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Task"]


@dataclass
class Task:
    name: str
    """Unique within an experiment ("train", "lr=1e-3,seed=1")."""
    program: list[str]
    """What follows the Python executable: ["-m", "stoker", "train", "JOBDIR/config.yaml", "--yes"]."""
    job_dir: Path
    """This task's folder in the job store: config.yaml, command.txt, logs/stdout.log, ..."""
    workdir: Path
    """Working directory of the job (the user's project, or a shipped copy of it)."""
    env: dict[str, str] = field(default_factory=dict)
    """ONLY variables named explicitly (profile env_vars, thread counts)."""
    depends_on: list[str] = field(default_factory=list)
    """Names of tasks that must succeed first."""
    run_dir: str | None = None
    """The training's run directory when it is known at launch (a container mounts it)."""

    @property
    def stdout(self) -> Path:
        return self.job_dir / "logs" / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.job_dir / "logs" / "stderr.log"

    @property
    def job_id(self) -> str:
        """``<experiment id>/<task folder>``: unique across the job store."""
        return f"{self.job_dir.parent.name}/{self.job_dir.name}"

    def argv(self, python: str | None = None) -> list[str]:
        """The full command line with ``python`` (default: this interpreter)."""
        return [python or sys.executable, *self.program]

    def command_line(self, python: str | None = None) -> str:
        return shlex.join(self.argv(python))
