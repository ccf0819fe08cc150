"""The Slurm executor: an sbatch script per task, submitted here or over SSH to a login node.

Everything goes through Slurm's own commands (``sbatch --parsable``, ``squeue``,
``scontrol``, ``sacct``, ``scancel``), run by :mod:`stoker.launch.ssh` on this machine or on
the login node. submitit was considered and not used: it pickles the function it runs
(the job path must never unpickle), imports on the submitting side what the job needs, and
has no SSH transport.

The script (``JOB_DIR/job.sbatch``) is what ``--dryrun`` prints:

- ``#SBATCH`` lines from the config (nodes, tasks, GPUs, CPUs, memory, time, account,
  partition, qos, constraint, exclusive), ``--signal=USR1@90`` and ``--requeue``; output
  to ``JOB_DIR/logs/stdout.log`` and ``stderr.log``, appended across requeues;
- the job's environment (only ``env_vars`` and the task's own; values of secret-looking
  names are not written: they travel on sbatch's standard input and reach the job through
  sbatch's environment), ``cd`` to the work dir, ``setup_lines``;
- the command under ``srun`` (so ``--signal`` and ``scancel --signal=USR1`` reach it; with
  Pyxis container options when ``container_image`` is set); several nodes or processes per
  node: ``srun`` starts one ``python -m torch.distributed.run`` per node, the first node of
  the allocation being the rendezvous;
- preemption: the trainer saves a checkpoint on SIGUSR1 and exits with 138 (128 + USR1,
  as it exits 128 + N for each stop signal; a program without a handler killed by USR1
  exits 138 too). When the command exits 138 while the job is still RUNNING (a cancel or a
  time limit ends the job itself first), the script runs ``scontrol requeue
  $SLURM_JOB_ID``; the requeued
  job runs the same command, and ``resume=auto`` continues from that checkpoint. At most
  ``MAX_REQUEUES`` times, so a command that always exits 138 cannot loop forever. Under
  torchrun (which exits 1 whatever stopped its workers) a bash trap around the ``srun``
  step marks the USR1 in ``JOB_DIR/.preempted``; a non-zero exit with that mark requeues;
- ``JOB_DIR/exit.json`` written at the end (``{"exit_code": N, ...}``), the last source of
  status when the cluster has forgotten the job and keeps no accounting.

Status, from any process: ``squeue`` (pending or running), then ``scontrol show job``
(finished jobs, kept ``MinJobAge``), then ``sacct`` (accounting, where slurmdbd runs),
then ``exit.json``, in one round trip.

Paths: with ``host`` unset, or set with ``remote_dir`` unset, the job folder's path is used
as is on the cluster: the login node must see the same filesystem (true on localhost and on
clusters whose home/project filesystems are shared). With ``remote_dir``, the job folder is
copied there over SSH before submission and its logs copied back when asked for.
"""
from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from stoker.atomic import atomic_write_text
from stoker.errors import RunError, UserError
from stoker.launch.executors.base import Executor, JobState, JobStatus
from stoker.config.secrets import MASK, is_secret
from stoker.launch.ssh import Shell, shell_for
from stoker.launch.task import Task

__all__ = ["PREEMPT_EXIT", "MAX_REQUEUES", "SlurmExecutor", "slurm_state"]

SCRIPT_FILE = "job.sbatch"
ARRAY_FILE = "array.sbatch"
EXIT_FILE = "exit.json"
CODE_DIR = "code"
PREEMPT_EXIT = 138  # 128 + SIGUSR1: the trainer saved a checkpoint on USR1 and stopped
MAX_REQUEUES = 20
RDZV_PORT = 29500
MARK_FILE = ".preempted"
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"  # forwarded to the workers
# The srun step of a torchrun job: run it, note a USR1 in the marker file, wait it out.
STEP_TRAP = ('trap "touch \\"$STOKER_PREEMPT_MARK\\"" USR1; "$@" & c=$!; '
             'while ! wait "$c"; do kill -0 "$c" 2>/dev/null || break; done; wait "$c"')

_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
            "RESV_DEL_HOLD", "SPECIAL_EXIT", "RESIZING", "POWER_UP_NODE"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "SUSPENDED", "STOPPED"}
_FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "PREEMPTED"}


def slurm_state(state: str) -> JobState:
    """Slurm's job state (``CANCELLED by 0``, ``COMPLETED``...) as a :class:`JobState`."""
    word = state.split()[0].rstrip("+").upper() if state.strip() else ""
    if word in _PENDING:
        return JobState.PENDING
    if word in _RUNNING:
        return JobState.RUNNING
    if word == "COMPLETED":
        return JobState.SUCCEEDED
    if word == "CANCELLED":
        return JobState.CANCELLED
    if word in _FAILED:
        return JobState.FAILED
    return JobState.UNKNOWN


def _exit_code(text: str) -> int | None:
    """``3:0`` (code:signal) -> 3; ``0:9`` (killed by signal 9) -> 137, as a shell says."""
    code, _, sig = text.strip().partition(":")
    if not code.isdigit():
        return None
    if sig.isdigit() and int(sig) and not int(code):
        return 128 + int(sig)
    return int(code)


def _q(value: object) -> str:
    return shlex.quote(str(value))


class SlurmExecutor(Executor):
    """Runs tasks as Slurm batch jobs (see the module docstring for the script)."""

    kind = "slurm"
    supports_after = True
    outlives_launcher = True

    # ------------------------------------------------------------------ checks

    def shell(self) -> Shell:
        return shell_for(self.config)

    def check(self, task: Task) -> None:
        if self.config.host is None and shutil.which("sbatch") is None:
            raise UserError(
                "`sbatch` is not on PATH and no login node is set: run on a machine with "
                "Slurm's commands, or submit over SSH with executor.host=LOGIN_NODE (plus "
                "executor.user=..., executor.identity=~/.ssh/KEY, or a [profile] in env.toml "
                "with host/user/identity)")
        if self.config.nodes < 1:
            raise UserError(f"executor.nodes={self.config.nodes}: a job needs at least 1 node")

    # ------------------------------------------------------------------ the script

    def python(self) -> str:
        return self.config.python or sys.executable

    def _remote_job_dir(self, task: Task) -> str:
        """The job folder as the cluster sees it."""
        if self.config.host and self.config.remote_dir:
            return f"{self.config.remote_dir.rstrip('/')}/{task.job_id}"
        return str(task.job_dir)

    def _ships_code(self, task: Task) -> bool:
        """Code goes with the job unless the work dir already lies in the job folder."""
        try:
            Path(task.workdir).resolve().relative_to(Path(task.job_dir).resolve())
        except ValueError:
            return True
        return False

    def _local_workdir(self, task: Task) -> Path:
        """Where the job starts, on this machine's side: inside ``JOB_DIR/code``."""
        if not self._ships_code(task):
            return Path(task.workdir)
        from stoker.launch.code import planned_workdir

        return planned_workdir(Path(task.workdir), Path(task.job_dir) / CODE_DIR)

    def _workdir(self, task: Task) -> str:
        """Where the job starts, as the cluster sees it."""
        local = self._local_workdir(task)
        try:
            rel = local.resolve().relative_to(Path(task.job_dir).resolve())
        except ValueError:
            return str(local)  # outside the job folder: must exist on the cluster already
        base = self._remote_job_dir(task)
        return base if str(rel) == "." else f"{base}/{rel.as_posix()}"

    def job_env(self, task: Task) -> dict[str, str]:
        """The job's environment: the executor's ``env_vars`` and the task's own, no more."""
        return {**self.config.job_env(), **task.env}

    def _nproc(self) -> int:
        c = self.config
        return c.nproc_per_node or c.gpus_per_node or 1

    def _distributed(self) -> bool:
        return self.config.nodes > 1 or self._nproc() > 1

    def directives(self, *, job_name: str, out: str | None, err: str | None,
                   array: int | None = None, array_limit: int | None = None) -> list[str]:
        """The ``#SBATCH`` lines."""
        c = self.config
        d: list[str] = [f"--job-name={job_name}"]
        if out:
            d.append(f"--output={out}")
        if err:
            d.append(f"--error={err}")
        d += ["--open-mode=append", f"--nodes={c.nodes}"]
        d.append("--ntasks-per-node=1" if self._distributed()
                 else f"--ntasks-per-node={c.ntasks_per_node}")
        for flag, value in (("gpus-per-node", c.gpus_per_node),
                            ("cpus-per-task", c.cpus_per_task), ("mem", c.mem),
                            ("time", c.time), ("account", c.account),
                            ("partition", c.partition), ("qos", c.qos),
                            ("constraint", c.constraint)):
            if value is not None:
                d.append(f"--{flag}={value}")
        if c.exclusive:
            d.append("--exclusive")
        if c.signal:
            d.append(f"--signal={c.signal}")
        if c.requeue:
            d.append("--requeue")
        if array is not None:
            limit = f"%{array_limit}" if array_limit and array_limit < array else ""
            d.append(f"--array=0-{array - 1}{limit}")
        return [f"#SBATCH {_q(x) if ' ' in x else x}" for x in d]

    def _srun(self, task: Task) -> list[str]:
        c = self.config
        srun = ["srun", "--kill-on-bad-exit=1"]
        if self._distributed():
            srun += [f"--nodes={c.nodes}", "--ntasks-per-node=1"]
        if c.container_image:
            mounts = [*c.container_mounts, f"{self._remote_job_dir(task)}:"
                      f"{self._remote_job_dir(task)}"]
            srun += [f"--container-image={c.container_image}",
                     f"--container-mounts={','.join(mounts)}",
                     f"--container-workdir={self._workdir(task)}"]
        return srun

    def _command(self, task: Task) -> list[str]:
        """The task's command under srun (and torchrun across nodes/processes)."""
        if not self._distributed():
            return [*self._srun(task), self.python(), *task.program]
        c = self.config
        run = [self.python(), "-m", "torch.distributed.run", f"--nnodes={c.nodes}",
               f"--nproc-per-node={self._nproc()}", "--rdzv-backend=c10d",
               '--rdzv-endpoint="$STOKER_RDZV_HOST:$STOKER_RDZV_PORT"',
               '--rdzv-id="$SLURM_JOB_ID"', f"--signals-to-handle={TORCHRUN_SIGNALS}",
               *task.program]
        # torchrun exits 1 whatever stopped its workers: a trap in the step notes the USR1.
        return [*self._srun(task), "bash", "-c", '"$STOKER_STEP"', "bash", *run]

    def _body(self, task: Task, *, indent: str = "") -> list[str]:
        """Environment, working directory, setup lines and the command of one task."""
        lines: list[str] = ["set -e  # a failing setup line stops the job"]
        for key, value in self.job_env(task).items():
            if is_secret(key):
                lines.append(f"# {key} comes from sbatch's environment (secret, not written)")
            else:
                lines.append(f"export {key}={_q(value)}")
        lines.append(f"cd {_q(self._workdir(task))}")
        lines += list(self.config.setup_lines)
        if self._distributed():
            lines += ['STOKER_RDZV_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | '
                      'head -n 1)', f'STOKER_RDZV_PORT={RDZV_PORT}',
                      f"export STOKER_PREEMPT_MARK={_q(self._remote_job_dir(task) + '/' + MARK_FILE)}",
                      'rm -f "$STOKER_PREEMPT_MARK"',
                      f"STOKER_STEP={_q(STEP_TRAP)}"]
        lines.append("set +e")
        cmd = self._command(task)
        quoted = [x if x.startswith(("--rdzv-endpoint=", "--rdzv-id=", '"$STOKER_STEP"'))
                  else _q(x) for x in cmd]
        lines.append(" ".join(quoted))
        return [indent + ln if ln else ln for ln in lines]

    def _epilogue(self, job_dir: str) -> list[str]:
        return [
            "rc=$?",
            f"if {{ [ $rc -eq {PREEMPT_EXIT} ] || {{ [ $rc -ne 0 ] && "
            '[ -e "${STOKER_PREEMPT_MARK:-/nonexistent}" ]; }; } && \\',
            f"   [ \"${{SLURM_RESTART_COUNT:-0}}\" -lt {MAX_REQUEUES} ] && \\",
            '   scontrol show job "$SLURM_JOB_ID" | grep -q "JobState=RUNNING"; then',
            '  echo "stoker: preempted (stopped on SIGUSR1, exit $rc): requeueing '
            'job $SLURM_JOB_ID" >&2',
            '  scontrol requeue "$SLURM_JOB_ID" && sleep 600',
            "fi",
            f"printf '{{\"exit_code\": %d, \"ended\": %s, \"slurm_job_id\": \"%s\"}}\\n' "
            f"$rc \"$(date +%s)\" \"$SLURM_JOB_ID\" > {job_dir}/{EXIT_FILE}.tmp"
            f" && mv -f {job_dir}/{EXIT_FILE}.tmp {job_dir}/{EXIT_FILE}",
            "exit $rc",
        ]

    def script(self, task: Task) -> str:
        """The sbatch script of one task (what ``--dryrun`` prints)."""
        jd = self._remote_job_dir(task)
        name = self.config.job_name or f"stoker-{task.name}"
        lines = ["#!/bin/bash",
                 *self.directives(job_name=name, out=f"{jd}/logs/stdout.log",
                                  err=f"{jd}/logs/stderr.log"),
                 f"# stoker task {task.name!r}, job folder {jd}",
                 *self._body(task), *self._epilogue(_q(jd))]
        return "\n".join(lines) + "\n"

    def array_script(self, tasks: list[Task], max_parallel: int | None = None) -> str:
        """One job array for ``tasks``: element ``i`` runs ``tasks[i]`` in its own folder
        (at most ``max_parallel`` elements at once)."""
        first = self._remote_job_dir(tasks[0])
        parent = first.rsplit("/", 1)[0]
        name = self.config.job_name or f"stoker-{tasks[0].job_dir.parent.name}"
        lines = ["#!/bin/bash",
                 *self.directives(job_name=name, out=f"{parent}/slurm-%A_%a.out", err=None,
                                  array=len(tasks), array_limit=max_parallel),
                 f"# stoker job array of {len(tasks)} tasks",
                 'case "$SLURM_ARRAY_TASK_ID" in']
        for i, task in enumerate(tasks):
            jd = self._remote_job_dir(task)
            lines += [f"{i})", f"  job_dir={_q(jd)}  # {task.name}",
                      '  exec >>"$job_dir/logs/stdout.log" 2>>"$job_dir/logs/stderr.log"',
                      *self._body(task, indent="  "), "  ;;"]
        lines += ['*) echo "stoker: no task for array index $SLURM_ARRAY_TASK_ID" >&2; exit 2;;',
                  "esac", *self._epilogue('"$job_dir"')]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ submission

    def _sbatch_line(self, script_path: str, after: Sequence[dict[str, Any]]) -> str:
        args = ["sbatch", "--parsable"]
        ids = [str(h["job_id"]) for h in after]
        if ids:
            args.append("--dependency=afterok:" + ":".join(ids))
        return shlex.join([*args, script_path])

    def _secret_exports(self, tasks: Sequence[Task], *, masked: bool) -> list[str]:
        out = []
        for task in tasks:
            for key, value in self.job_env(task).items():
                if is_secret(key):
                    out.append(f"export {key}={MASK if masked else _q(value)}")
        return out

    def describe(self, task: Task) -> str:
        where = ("" if not self.config.host
                 else f"# over SSH: {self.shell().where()}\n")
        secrets = self._secret_exports([task], masked=True)
        submit = self._sbatch_line(f"{self._remote_job_dir(task)}/{SCRIPT_FILE}", ())
        return (f"{where}# {SCRIPT_FILE}\n{self.script(task)}\n# submitted with\n"
                + "".join(s + "\n" for s in secrets) + submit + "\n")

    def _ship(self, tasks: Sequence[Task]) -> None:
        """With ``remote_dir``: copy the job folders to the cluster (tar over SSH)."""
        if not (self.config.host and self.config.remote_dir):
            return
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for task in tasks:
                tar.add(task.job_dir, arcname=task.job_id)
        import base64

        data = base64.b64encode(buf.getvalue()).decode()
        root = self.config.remote_dir.rstrip("/")
        res = self.shell().run(f"set -e\nmkdir -p {_q(root)}\nbase64 -d <<'EOF' | tar -xz -C "
                               f"{_q(root)}\n{data}\nEOF\n")
        if res.returncode != 0:
            raise RunError(f"copying the job folder to {self.shell().where()}:{root} failed: "
                           f"{res.stderr.strip()}")

    def _ship_code(self, task: Task) -> None:
        """Copy the user's code into ``JOB_DIR/code`` and record it in ``code.json``."""
        if not self._ships_code(task) or (Path(task.job_dir) / CODE_DIR).exists():
            return
        from stoker.launch.code import ship_code, write_snapshot

        snap = ship_code(Path(task.workdir), Path(task.job_dir) / CODE_DIR)
        write_snapshot(Path(task.job_dir), snap)

    def _submit_script(self, tasks: Sequence[Task], script: str, script_name: str,
                       job_dir: Path, remote_dir: str, after: Sequence[dict[str, Any]]) -> str:
        for task in tasks:
            (task.job_dir / "logs").mkdir(parents=True, exist_ok=True)
            self._ship_code(task)
        atomic_write_text(job_dir / script_name, script)
        (job_dir / script_name).chmod(0o755)
        self._ship(tasks)
        line = self._sbatch_line(f"{remote_dir}/{script_name}", after)
        shell = self.shell()
        res = shell.run("\n".join([*self._secret_exports(tasks, masked=False), line]) + "\n")
        if res.returncode != 0 or not res.stdout.strip():
            raise RunError(f"sbatch on {shell.where()} refused the job "
                           f"({job_dir / script_name}): {res.stderr.strip() or res.stdout}")
        return res.stdout.strip().splitlines()[-1].split(";")[0]  # "ID" or "ID;cluster"

    def _handle(self, task: Task, job_id: str) -> dict[str, Any]:
        c = self.config
        return {"kind": "slurm", "job_id": job_id, "job_dir": str(task.job_dir),
                "remote_job_dir": self._remote_job_dir(task), "host": c.host, "user": c.user,
                "port": c.port, "identity": c.identity, "ssh_options": list(c.ssh_options),
                "submitted": time.time()}

    def submit(self, task: Task, *, after: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        self.check(task)
        job_id = self._submit_script([task], self.script(task), SCRIPT_FILE, task.job_dir,
                                     self._remote_job_dir(task), after)
        return self._handle(task, job_id)

    def describe_array(self, tasks: list[Task], *, max_parallel: int | None = None) -> str:
        where = ("" if not self.config.host
                 else f"# over SSH: {self.shell().where()}\n")
        first = self._remote_job_dir(tasks[0])
        at = first if self.config.host and self.config.remote_dir else first.rsplit("/", 1)[0]
        secrets = self._secret_exports(tasks, masked=True)
        submit = self._sbatch_line(f"{at}/{ARRAY_FILE}", ())
        return (f"{where}# {ARRAY_FILE}\n{self.array_script(tasks, max_parallel)}\n"
                "# submitted with\n" + "".join(s + "\n" for s in secrets) + submit + "\n")

    def submit_array(self, tasks: list[Task], *, max_parallel: int | None = None
                     ) -> list[dict[str, Any]]:
        if not tasks:
            return []
        for task in tasks:
            self.check(task)
        if len(tasks) == 1:
            return [self.submit(tasks[0])]
        parent = tasks[0].job_dir.parent
        remote_parent = self._remote_job_dir(tasks[0]).rsplit("/", 1)[0]
        if self.config.host and self.config.remote_dir:
            # The array script sits beside the task folders; ship it inside the first one.
            script_dir, remote_script_dir = tasks[0].job_dir, self._remote_job_dir(tasks[0])
        else:
            script_dir, remote_script_dir = parent, remote_parent
        job_id = self._submit_script(tasks, self.array_script(tasks, max_parallel), ARRAY_FILE,
                                     script_dir, remote_script_dir, ())
        return [{**self._handle(t, f"{job_id}_{i}"), "array_job_id": job_id, "array_index": i}
                for i, t in enumerate(tasks)]

    # ------------------------------------------------------------------ following

    def _shell_of(self, handle: dict[str, Any]) -> Shell:
        """The shell recorded in ``handle`` (a new process may hold another config)."""
        from types import SimpleNamespace

        return shell_for(SimpleNamespace(
            host=handle.get("host"), user=handle.get("user"), port=handle.get("port") or 22,
            identity=handle.get("identity"), ssh_options=handle.get("ssh_options") or [],
            ssh_timeout_s=self.config.ssh_timeout_s))

    def status(self, handle: dict[str, Any]) -> JobStatus:
        job = _q(handle["job_id"])
        exit_file = _q(f"{handle['remote_job_dir']}/{EXIT_FILE}")
        probe = "\n".join([
            f"echo '@squeue'; squeue -h -j {job} -o '%T|%r' 2>/dev/null",
            f"echo '@scontrol'; scontrol -o show job {job} 2>/dev/null",
            f"echo '@sacct'; sacct -n -P -X -j {job} -o State,ExitCode 2>/dev/null",
            f"echo '@exit'; cat {exit_file} 2>/dev/null",
            "true"])
        res = self._shell_of(handle).run(probe)
        parts: dict[str, list[str]] = {}
        current = None
        for line in res.stdout.splitlines():
            if line.startswith("@"):
                current = line[1:]
                parts[current] = []
            elif current and line.strip():
                parts[current].append(line.strip())
        return _read_status(parts, handle)

    def cancel(self, handle: dict[str, Any]) -> None:
        res = self._shell_of(handle).run(f"scancel {_q(handle['job_id'])}")
        if res.returncode != 0 and not self.status(handle).state.is_terminal:
            raise RunError(f"scancel {handle['job_id']} failed: {res.stderr.strip()}")

    def log_files(self, handle: dict[str, Any]) -> list[Path]:
        logs = Path(handle["job_dir"]) / "logs"
        if handle.get("host") and handle["remote_job_dir"] != handle["job_dir"]:
            self._fetch_logs(handle, logs)
        return [logs / "stdout.log", logs / "stderr.log"]

    def _fetch_logs(self, handle: dict[str, Any], logs: Path) -> None:
        """Copy the logs of a job whose folder lives on the cluster (``remote_dir``)."""
        logs.mkdir(parents=True, exist_ok=True)
        for name in ("stdout.log", "stderr.log"):
            res = self._shell_of(handle).run(
                f"cat {_q(handle['remote_job_dir'] + '/logs/' + name)} 2>/dev/null; true")
            atomic_write_text(logs / name, res.stdout, fsync=False)


def _read_status(parts: dict[str, list[str]], handle: dict[str, Any]) -> JobStatus:
    """Combine the probe's answers: the first source that knows the job wins."""
    for line in parts.get("squeue", []):
        state, _, reason = line.partition("|")
        js = slurm_state(state)
        if js in (JobState.PENDING, JobState.RUNNING):
            detail = state if reason in ("", "None") else f"{state} ({reason})"
            return JobStatus(js, None, detail)
    for line in parts.get("scontrol", []):
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "JobState" in fields:
            js = slurm_state(fields["JobState"])
            code = _exit_code(fields.get("ExitCode", "")) if js.is_terminal else None
            detail = fields["JobState"]
            if fields.get("Restarts", "0") not in ("", "0"):
                detail += f", requeued {fields['Restarts']}x"
            return JobStatus(js, code, detail)
    for line in parts.get("sacct", []):
        state, _, code = line.partition("|")
        js = slurm_state(state)
        if js is not JobState.UNKNOWN:
            return JobStatus(js, _exit_code(code) if js.is_terminal else None, state)
    text = "\n".join(parts.get("exit", []))
    if text:
        try:
            code = int(json.loads(text)["exit_code"])
        except (ValueError, KeyError, TypeError):
            code = None
        if code is not None:
            state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
            return JobStatus(state, code, f"from {EXIT_FILE} (the cluster no longer knows the "
                             "job)")
    return JobStatus(JobState.UNKNOWN, None,
                     f"Slurm job {handle['job_id']} is unknown to squeue, scontrol and sacct, "
                     f"and wrote no {EXIT_FILE}")
