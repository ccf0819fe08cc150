"""The Docker executor: ``docker run --detach`` of the task's command line in a container.

Everything goes through the ``docker`` command (``run``, ``inspect``, ``stop``), not the
``docker`` Python SDK: the ``--dryrun`` output is then the exact command that runs (copy it
into a shell to run the job by hand), the client's own configuration applies unchanged
(``DOCKER_HOST``, ``docker context``, credential helpers), and stoker gains no dependency
(the SDK brings ``requests`` and ``urllib3`` and has no ``--dryrun`` of its own to show).

What the container gets (docs/docker.md):

- mounts, each at the same path as on this machine: the job folder read-write (logs, exit
  status, the shipped code), the project read-only (or, with ``ship_code``, the copy of it
  in ``JOB_DIR/code``), the run directory read-write when the launch fixed it,
  ``$STOKER_HOME`` read-write (``mount_home``: registry, corpus cache), then ``mounts``;
- environment: only ``pass_env`` (seed, thread counts, locale: nothing that is a host path),
  ``env_vars`` and the task's own variables. Secret-looking names are passed by name
  (``--env HF_TOKEN``): docker reads the value from its client's environment, so it is in
  no command line, no ``--dryrun`` output and no file of the job store;
- the command: ``/bin/sh -c 'exec "$@" >>JOB_DIR/logs/stdout.log 2>>.../stderr.log' sh
  PYTHON PROGRAM...``: the output lands in the job folder as it is written, so
  ``stoker exp logs --follow`` reads the same files as for every other executor, and the
  job is the container's main process (under ``--init``), so ``docker stop`` reaches it.

Status, from any process: ``docker inspect`` of the container id (the handle also keeps the
``DOCKER_HOST`` it was started with). Once the container has exited its exit code is copied
to ``JOB_DIR/exit.json``, which still answers after the container is removed. Cancel:
``docker stop --time cancel_grace_s``: SIGTERM (the trainer saves a checkpoint and stops),
SIGKILL after the grace period; a ``cancel_requested`` mark makes the job CANCELLED, not
FAILED.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from stoker.atomic import atomic_write_text
from stoker.errors import RunError, UserError
from stoker.launch.executors.base import Executor, JobState, JobStatus
from stoker.launch.executors.process import CANCEL_FILE
from stoker.config.secrets import is_secret
from stoker.launch.task import Task
from stoker.launch.wrapper import EXIT_FILE

__all__ = ["DockerExecutor", "container_state"]

CODE_DIR = "code"
LABEL = "stoker.job_dir"
_PING_TIMEOUT_S = 15.0
_QUERY_TIMEOUT_S = 60.0
# Daemons that answered in this process (DOCKER_HOST value, or "" for the default).
_ANSWERED: set[str] = set()

_PENDING = {"created"}
_RUNNING = {"running", "paused", "restarting", "removing"}


def container_state(state: dict[str, Any], *, cancelled: bool = False) -> JobStatus:
    """``docker inspect``'s ``.State`` as a :class:`JobStatus`."""
    status = str(state.get("Status", "")).lower()
    if status in _PENDING:
        return JobStatus(JobState.PENDING, detail="container created, not started")
    if status in _RUNNING:
        return JobStatus(JobState.RUNNING, detail=f"container {status}")
    if status not in ("exited", "dead"):
        return JobStatus(JobState.UNKNOWN, detail=f"container state {status!r}")
    code = int(state.get("ExitCode", -1))
    if code == 0:
        return JobStatus(JobState.SUCCEEDED, 0)
    if cancelled:
        return JobStatus(JobState.CANCELLED, code, "cancelled")
    if state.get("OOMKilled"):
        return JobStatus(JobState.FAILED, code, "killed: out of memory (OOMKilled)")
    return JobStatus(JobState.FAILED, code, str(state.get("Error") or ""))


def _read_exit(job_dir: Path) -> dict[str, Any] | None:
    """The job's exit.json, validated (a damaged one: a RecordError naming it)."""
    from stoker.launch.records import read_exit

    rec = read_exit(job_dir / EXIT_FILE, experiment=job_dir.parent)
    return None if rec is None else rec.model_dump()


def _container_name(task: Task) -> str:
    """``stoker-<experiment>-<task>``: what ``docker ps`` shows (docker's name alphabet)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"stoker-{task.job_id}").strip("-.")
    return name[:200]


def _gpus(value: str | int) -> str:
    """``--gpus`` value; a device list needs its own quotes (``"device=0,1"``): docker reads
    the option as CSV and would split it at the comma."""
    text = str(value)
    if "," in text and not text.startswith('"'):
        return f'"{text}"'
    return text


def _abs(path: str | Path) -> str:
    """``path`` made absolute, symlinks kept: the container sees the same spelling as the
    command line (which names files of the job folder), and docker resolves the source."""
    return str(Path(path).expanduser().absolute())


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


class DockerExecutor(Executor):
    """Runs a task in a detached container (see the module docstring)."""

    kind = "docker"
    supports_after = False
    outlives_launcher = True

    # ------------------------------------------------------------------ the daemon

    @staticmethod
    def client_env(docker_host: str | None = None,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
        """The docker client's environment: ours (DOCKER_HOST, DOCKER_CONFIG, contexts),
        ``docker_host`` when the handle recorded one, and the secrets passed by name."""
        env = dict(os.environ)
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        env.update(extra or {})
        return env

    def _docker(self) -> str:
        docker = shutil.which("docker")
        if docker is None:
            raise UserError(
                "the docker client (`docker`) is not on PATH: install Docker (Debian/Ubuntu: "
                "`apt-get install docker.io`; elsewhere https://docs.docker.com/engine/install/)"
                ", or choose another executor (executor=detached runs on this machine without "
                "a container)")
        return docker

    def check(self, task: Task) -> None:
        if self.config.ship_code and self.config.workdir:
            raise UserError(
                f"executor.workdir={self.config.workdir} and executor.ship_code=true both say "
                "where the code is: keep workdir for code baked into the image, or ship_code "
                "to run a copy of your project")
        docker = self._docker()
        host = os.environ.get("DOCKER_HOST", "")
        if host in _ANSWERED:
            return
        where = (f"DOCKER_HOST={host}" if host
                 else "the default socket (or the current `docker context`)")
        try:
            res = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"],
                                 capture_output=True, text=True, timeout=_PING_TIMEOUT_S,
                                 env=self.client_env())
            ok, why = res.returncode == 0, (res.stderr.strip().splitlines() or [""])[-1]
        except subprocess.TimeoutExpired:
            ok, why = False, f"no answer within {_PING_TIMEOUT_S:.0f} s"
        if not ok:
            raise UserError(
                f"the Docker daemon at {where} does not answer ({why}). Start it "
                "(`sudo systemctl start docker`, or `sudo dockerd &`), point DOCKER_HOST at a "
                "running one (e.g. DOCKER_HOST=unix:///run/user/$UID/docker.sock for rootless "
                "Docker), or give your user access to its socket (the `docker` group)")
        _ANSWERED.add(host)

    # ------------------------------------------------------------------ the command

    def python(self) -> str:
        return self.config.python or sys.executable

    def workdir(self, task: Task) -> str:
        """The container's working directory."""
        if self.config.ship_code:
            from stoker.launch.code import planned_workdir

            return str(planned_workdir(Path(task.workdir), Path(task.job_dir) / CODE_DIR))
        return self.config.workdir or str(task.workdir)

    def home(self) -> Path:
        from stoker.data.corpus import stoker_home

        return Path(_abs(stoker_home()))

    def volumes(self, task: Task) -> list[str]:
        """``--volume`` values: the automatic mounts, then ``mounts``; one per destination
        (a mount you name wins), and none already inside a read-write mount of ours."""
        jd = _abs(task.job_dir)
        auto: list[tuple[str, str]] = [(jd, "rw")]
        if self.config.ship_code:
            auto.append((f"{jd}/{CODE_DIR}", "ro"))
        elif not self.config.workdir:
            auto.append((_abs(task.workdir), "ro"))
        if task.run_dir:
            auto.append((_abs(task.run_dir), "rw"))
        if self.config.mount_home:
            auto.append((str(self.home()), "rw"))
        named = {m.split(":")[1] if ":" in m else m for m in self.config.mounts}
        rw = [p for p, mode in auto if mode == "rw"]
        out: list[str] = []
        for path, mode in auto:
            if path in named:
                continue
            if mode == "rw" and any(_inside(path, o) and o != path for o in rw):
                continue  # e.g. the job folder inside $STOKER_HOME
            out.append(f"{path}:{path}" + (":ro" if mode == "ro" else ""))
        return out + list(self.config.mounts)

    def environment(self, task: Task) -> dict[str, str]:
        """Only ``pass_env``, ``env_vars`` and the task's variables (see the module)."""
        env = {k: os.environ[k] for k in self.config.pass_env if k in os.environ}
        env.update(self.config.job_env())
        env.update(task.env)
        if self.config.mount_home:
            env["STOKER_HOME"] = str(self.home())
        env["PYTHONUNBUFFERED"] = "1"  # logs appear as they are written
        return env

    def groups(self, task: Task) -> list[list[str]]:
        """The ``docker run`` command, one option per group (how ``--dryrun`` lays it out)."""
        c = self.config
        jd = _abs(task.job_dir)
        g: list[list[str]] = [["docker", "run", "--detach"],
                              ["--name", _container_name(task)], ["--label", f"{LABEL}={jd}"]]
        if c.init:
            g.append(["--init"])
        g += [["--volume", v] for v in self.volumes(task)]
        g.append(["--workdir", self.workdir(task)])
        for key, value in sorted(self.environment(task).items()):
            g.append(["--env", key if is_secret(key) else f"{key}={value}"])
        for flag, value in (("--gpus", None if c.gpus is None else _gpus(c.gpus)),
                            ("--shm-size", c.shm_size), ("--user", c.user),
                            ("--network", c.network)):
            if value is not None:
                g.append([flag, str(value)])
        g += [[a] for a in c.run_args]
        redirect = (f'exec "$@" >>{shlex.quote(jd + "/logs/stdout.log")} '
                    f'2>>{shlex.quote(jd + "/logs/stderr.log")}')
        g.append([c.image])
        g.append(["/bin/sh", "-c", redirect, "sh", *task.argv(self.python())])
        return g

    def argv(self, task: Task) -> list[str]:
        return [a for group in self.groups(task) for a in group]

    def describe(self, task: Task) -> str:
        lines = [f"# docker: a detached container of {self.config.image}; output to "
                 f"{task.stdout.parent}/"]
        secrets = sorted(k for k in self.environment(task) if is_secret(k))
        if secrets:
            lines.append(f"# {', '.join(secrets)}: passed by name, the value comes from the "
                         "launcher's environment (secret, not shown)")
        lines.append(" \\\n  ".join(shlex.join(group) for group in self.groups(task)))
        return "\n".join(lines)

    # ------------------------------------------------------------------ submission

    def _ship_code(self, task: Task) -> None:
        """Copy the project into ``JOB_DIR/code`` and record it in ``code.json``."""
        dest = Path(task.job_dir) / CODE_DIR
        if not self.config.ship_code or dest.exists():
            return
        from stoker.launch.code import ship_code, write_snapshot

        write_snapshot(Path(task.job_dir), ship_code(Path(task.workdir), dest))

    def submit(self, task: Task, *, after: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        if after:
            raise ValueError("the docker executor cannot wait for other jobs; the experiment "
                             "submits a task once its dependencies succeeded")
        self.check(task)
        task.stdout.parent.mkdir(parents=True, exist_ok=True)
        self._ship_code(task)
        # Mount points that do not exist would be created by the daemon (as root); a run
        # directory inside the read-only project must exist before the container starts.
        for path in ([task.run_dir] if task.run_dir else []) + (
                [str(self.home())] if self.config.mount_home else []):
            Path(path).mkdir(parents=True, exist_ok=True)
        env = self.environment(task)
        secrets = {k: v for k, v in env.items() if is_secret(k)}
        argv = self.argv(task)
        argv[0] = self._docker()
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             env=self.client_env(extra=secrets))
        if res.returncode != 0:
            name = _container_name(task)
            subprocess.run([argv[0], "rm", "--force", name], capture_output=True,
                           env=self.client_env())  # created but not started: leave nothing
            raise RunError(f"docker run of task '{task.name}' failed (exit {res.returncode}): "
                           f"{res.stderr.strip() or res.stdout.strip()}")
        container = res.stdout.strip().splitlines()[-1]
        return {"kind": "docker", "container_id": container, "name": _container_name(task),
                "image": self.config.image, "docker_host": os.environ.get("DOCKER_HOST"),
                "job_dir": str(task.job_dir), "stdout": str(task.stdout),
                "stderr": str(task.stderr), "submitted": time.time()}

    # ------------------------------------------------------------------ following

    def _client(self, handle: dict[str, Any], *args: str,
                timeout: float = _QUERY_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        docker = shutil.which("docker")
        if docker is None:
            return subprocess.CompletedProcess(args, 127, "", "the docker client is not on PATH")
        try:
            return subprocess.run([docker, *args], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL,
                                  env=self.client_env(handle.get("docker_host")))
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", f"no answer within {timeout:.0f} s")

    def status(self, handle: dict[str, Any]) -> JobStatus:
        job_dir = Path(handle["job_dir"])
        cancelled = (job_dir / CANCEL_FILE).exists()
        ended = _read_exit(job_dir)
        if ended is not None:
            return container_state({"Status": "exited", "ExitCode": ended["exit_code"],
                                    "OOMKilled": ended.get("oom_killed"),
                                    "Error": ended.get("error")}, cancelled=cancelled)
        cid = str(handle["container_id"])
        res = self._client(handle, "inspect", "--type", "container", "--format",
                           "{{json .State}}", cid)
        if res.returncode != 0:
            why = res.stderr.strip()
            if "no such" in why.lower():
                if cancelled:
                    return JobStatus(JobState.CANCELLED, detail="container removed")
                return JobStatus(JobState.FAILED, detail=f"container {cid[:12]} was removed "
                                 "before it recorded an exit status")
            return JobStatus(JobState.UNKNOWN, detail=f"docker inspect {cid[:12]} failed: {why}")
        state = json.loads(res.stdout)
        st = container_state(state, cancelled=cancelled)
        if st.state.is_terminal:  # keep the answer for when the container is gone
            atomic_write_text(job_dir / EXIT_FILE, json.dumps({
                "exit_code": st.exit_code, "ended": state.get("FinishedAt"),
                "container_id": cid, "oom_killed": bool(state.get("OOMKilled")),
                "error": state.get("Error") or ""}) + "\n")
        return st

    def cancel(self, handle: dict[str, Any]) -> None:
        if self.status(handle).state.is_terminal:
            return
        atomic_write_text(Path(handle["job_dir"]) / CANCEL_FILE, f"{time.time()}\n")
        grace = math.ceil(float(self.config.cancel_grace_s))
        res = self._client(handle, "stop", "--time", str(grace), str(handle["container_id"]),
                           timeout=grace + _QUERY_TIMEOUT_S)
        if res.returncode != 0 and not self.status(handle).state.is_terminal:
            raise RunError(f"docker stop {handle['container_id'][:12]} failed: "
                           f"{res.stderr.strip()}")

    def log_files(self, handle: dict[str, Any]) -> list[Path]:
        job_dir = Path(handle["job_dir"])
        return [Path(handle.get("stdout") or job_dir / "logs" / "stdout.log"),
                Path(handle.get("stderr") or job_dir / "logs" / "stderr.log")]
