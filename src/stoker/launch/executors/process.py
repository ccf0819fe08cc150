"""Jobs that are processes of this interpreter on this machine (local, detached, torchrun).

The launcher starts :mod:`stoker.launch.wrapper` (which starts the job and writes its exit
status) with the job's log files as stdout/stderr and only the environment the config
names. The handle records the wrapper's PID *and its start time*: a PID that the system
later gives to another process is never taken for the job.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

from stoker.atomic import atomic_write_text
from stoker.launch.executors.base import Executor, JobState, JobStatus
from stoker.config.secrets import mask_env
from stoker.launch.task import Task
from stoker.launch.wrapper import EXIT_FILE

__all__ = ["ProcessExecutor", "owner_alive", "process_alive"]

CANCEL_FILE = "cancel_requested"
_START_TOLERANCE_S = 0.1
# Popen objects of jobs this process started: polled so finished ones are reaped at once.
_CHILDREN: dict[int, subprocess.Popen] = {}


def process_alive(pid: int, create_time: float) -> bool:
    """True when ``pid`` runs and is the process that started at ``create_time``."""
    import psutil

    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _START_TOLERANCE_S:
            return False  # the PID now belongs to another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def owner_alive(record: dict[str, Any]) -> bool:
    """Whether the process a record names (``pid``, ``create_time``, ``host``: the job
    store's driver.json) still runs. One on another host is taken as alive: it cannot be
    asked from here, and taking it for dead would call its work lost."""
    if record.get("host") not in (None, socket.gethostname()):
        return True
    return process_alive(int(record["pid"]), float(record["create_time"]))


def _read_exit(job_dir: Path) -> dict[str, Any] | None:
    """The job's exit.json, validated (a damaged one: a RecordError naming it)."""
    from stoker.launch.records import read_exit

    rec = read_exit(job_dir / EXIT_FILE, experiment=job_dir.parent)
    return None if rec is None else rec.model_dump()


class ProcessExecutor(Executor):
    """Start ``python PROGRAM`` under the exit-recording wrapper."""

    new_session: ClassVar[bool] = True
    where: ClassVar[str] = "a background process in its own session (outlives this terminal)"

    def program(self, task: Task) -> list[str]:
        """What follows the interpreter (torchrun puts its launcher in front)."""
        return list(task.program)

    def environment(self, task: Task, environ: dict[str, str] | None = None) -> dict[str, str]:
        environ = os.environ if environ is None else environ
        env = {k: environ[k] for k in self.config.pass_env if k in environ}
        env.update(task.env)
        env["PYTHONUNBUFFERED"] = "1"  # logs appear as they are written
        return env

    def argv(self, task: Task) -> list[str]:
        return [sys.executable, *self.program(task)]

    def describe(self, task: Task) -> str:
        env = mask_env(self.environment(task))
        lines = [f"# {self.kind}: {self.where}", f"cd {shlex.quote(str(task.workdir))}",
                 "env -i \\"]
        lines += [f"  {k}={shlex.quote(v)} \\" for k, v in sorted(env.items())]
        lines.append("  " + shlex.join(self.argv(task)))
        lines.append(f"# stdout: {task.stdout}")
        lines.append(f"# stderr: {task.stderr}")
        return "\n".join(lines)

    def submit(self, task: Task, *, after: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        if after:
            raise ValueError(f"the {self.kind} executor cannot wait for other jobs; the "
                             "experiment submits a task once its dependencies succeeded")
        task.stdout.parent.mkdir(parents=True, exist_ok=True)
        wrapper = [sys.executable, "-m", "stoker.launch.wrapper", str(task.job_dir),
                   *(["--own-session"] if self.new_session else []), "--", *self.argv(task)]
        with open(task.stdout, "ab") as out, open(task.stderr, "ab") as err:
            proc = subprocess.Popen(wrapper, cwd=task.workdir, env=self.environment(task),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=self.new_session, close_fds=True)
        _CHILDREN[proc.pid] = proc
        import psutil  # after the start: the job does not wait for this import

        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:  # pragma: no cover - reaped already: cannot happen, we hold it
            created = time.time()
        return {"kind": self.kind, "pid": proc.pid, "create_time": created,
                "host": socket.gethostname(), "job_dir": str(task.job_dir),
                "stdout": str(task.stdout), "stderr": str(task.stderr)}

    def status(self, handle: dict[str, Any]) -> JobStatus:
        job_dir = Path(handle["job_dir"])
        ended = _read_exit(job_dir)
        if ended is None:
            if handle.get("host") not in (None, socket.gethostname()):
                return JobStatus(JobState.UNKNOWN, detail=f"runs on host {handle['host']}; "
                                 "ask there")
            if process_alive(int(handle["pid"]), float(handle["create_time"])):
                return JobStatus(JobState.RUNNING, detail=f"pid {handle['pid']}")
            ended = _read_exit(job_dir)  # it may have ended just now
        cancelled = (job_dir / CANCEL_FILE).exists()
        if ended is None:
            if cancelled:
                return JobStatus(JobState.CANCELLED, detail="killed")
            return JobStatus(JobState.FAILED, detail=f"process {handle['pid']} ended without "
                             "recording an exit status (killed by SIGKILL or a restart)")
        code = int(ended["exit_code"])
        if code == 0:
            return JobStatus(JobState.SUCCEEDED, 0)
        if cancelled:
            return JobStatus(JobState.CANCELLED, code, "cancelled")
        return JobStatus(JobState.FAILED, code)

    def cancel(self, handle: dict[str, Any]) -> None:
        import psutil

        if self.status(handle).state.is_terminal:
            return
        job_dir = Path(handle["job_dir"])
        atomic_write_text(job_dir / CANCEL_FILE, f"{time.time()}\n")
        pid, created = int(handle["pid"]), float(handle["create_time"])
        if not process_alive(pid, created):
            return
        try:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
            proc.send_signal(signal.SIGTERM)  # the wrapper forwards it: the trainer checkpoints
        except psutil.NoSuchProcess:
            return
        deadline = time.monotonic() + float(self.config.cancel_grace_s)
        while time.monotonic() < deadline:
            if not process_alive(pid, created):
                return
            time.sleep(0.1)
        if not process_alive(pid, created):
            return
        try:
            family += [c for c in proc.children(recursive=True) if c not in family]
        except psutil.NoSuchProcess:
            pass
        for p in reversed(family):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=5)
        child = _CHILDREN.get(pid)
        if child is not None:
            child.poll()

    def log_files(self, handle: dict[str, Any]) -> list[Path]:
        job_dir = Path(handle["job_dir"])
        return [Path(handle.get("stdout") or job_dir / "logs" / "stdout.log"),
                Path(handle.get("stderr") or job_dir / "logs" / "stderr.log")]
