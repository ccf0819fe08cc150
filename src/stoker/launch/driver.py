"""Following and driving a stored experiment: each task's state, submitting tasks as their
dependencies succeed, cancelling what this terminal owns on Ctrl-C.

Also ``python -m stoker.launch.driver EXP_ID STORE_ROOT``: submit a detached experiment's
waiting tasks, then exit. Started in its own session by ``Experiment.launch(detach=True)``
only when some task waits for another and its executor cannot make the scheduler wait. Its
output goes to ``driver.log`` in the experiment folder. Everything here reads the job store,
so it works from any process (``stoker exp status`` in a new terminal).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from stoker.errors import ConfigError, RunError, UserError
from stoker.launch.cores import thread_env
from stoker.launch.executors import Executor, JobState, JobStatus, get_executor
from stoker.launch.store import JobStore, TaskRecord
from stoker.launch.task import Task
from stoker.launch.testhook import ENV as KILL_AT
from stoker.launch.testhook import kill_point

__all__ = ["TaskState", "cancel_owned", "drive", "driver_alive", "experiment_states",
           "owner_record", "raise_for_failures", "task_state"]


@dataclass
class TaskState:
    """One task's state as ``stoker exp status`` shows it."""

    record: TaskRecord
    status: JobStatus
    handle: dict[str, Any] | None


def raise_for_failures(exp_id: str, states: list[TaskState]) -> None:
    for st in states:
        if st.status.state in (JobState.FAILED, JobState.LOST):
            code = f" (exit code {st.status.exit_code})" if st.status.exit_code is not None else ""
            detail = f": {st.status.detail}" if st.status.detail else ""
            if st.status.state == JobState.LOST:
                raise RunError(f"experiment {exp_id}: task '{st.record.name}' was lost{detail}")
            raise RunError(f"experiment {exp_id}: task '{st.record.name}' failed{code}{detail}; "
                           f"its output: stoker exp logs {exp_id} {st.record.name}")


def start_driver(store: JobStore, exp_id: str) -> None:
    """Start ``python -m stoker.launch.driver ID`` in its own session (it outlives us).

    It keeps the launcher's environment: it is stoker's own process, not a job, and it needs
    the variables that profiles name to give them to the tasks it submits.
    """
    path = store.path(exp_id)
    env = {k: v for k, v in os.environ.items() if k != KILL_AT}  # a test kills the launcher
    with open(path / "driver.log", "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "stoker.launch.driver", exp_id,
                                 str(store.root)], stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=log_file, start_new_session=True, close_fds=True, env=env)
    kill_point("driver-started")  # the driver records itself too: see driver_alive
    store.set_driver(exp_id, owner_record("driver", proc.pid))


def owner_record(role: str, pid: int | None = None) -> dict[str, Any]:
    """driver.json's content for process ``pid`` (default: this one) as ``role``
    ("launcher" or "driver"): pid, start time and host, so a reader can tell it is gone."""
    import psutil

    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "create_time": psutil.Process(pid).create_time(),
            "host": socket.gethostname(), "role": role}


def executor_for(record: TaskRecord) -> Executor:
    """The executor of a stored task, for status/cancel (masked secrets do not matter)."""
    return get_executor(record.executor)


def stored_executor_config(record: TaskRecord) -> Any:
    """A stored task's real executor config: chosen again the way it was chosen (secrets
    come back from env.toml profiles and the environment, never from the store)."""
    from stoker.launch.config import parse_executor_config
    from stoker.launch.profiles import select_executor

    spec = record.spec or {}
    if spec.get("selector") is not None or spec.get("overrides"):
        return select_executor(spec.get("selector"), spec.get("overrides") or [],
                               base=spec.get("base"), cwd=Path(record.workdir))
    return parse_executor_config(dict(spec.get("base") or record.executor))


def task_for_submit(record: TaskRecord, job_dir: Path) -> tuple[Task, Executor]:
    """Rebuild a stored task for submission (see :func:`stored_executor_config`)."""
    cfg = stored_executor_config(record)
    workdir = Path(record.workdir)
    task = Task(record.name, list(record.program), job_dir, workdir,
                {**thread_env(record.threads), **cfg.job_env()}, list(record.depends_on),
                record.run_dir)
    return task, get_executor(cfg)


def task_state(store: JobStore, exp_id: str, record: TaskRecord,
               driver_alive: bool | Callable[[], bool] | None = None) -> TaskState:
    """One task's state from the store and its executor. ``driver_alive``: whether its
    submitter still runs (a callable is asked only for a task that was never submitted);
    False makes such a task LOST. None: do not ask (the caller is the submitter)."""
    handle = store.handle(exp_id, record.folder)
    if handle is not None:
        return TaskState(record, executor_for(record).status(handle), handle)
    skipped = store.skipped(exp_id, record.folder)
    if skipped is not None:
        state = JobState.FAILED if skipped.startswith("submission failed") else JobState.CANCELLED
        return TaskState(record, JobStatus(state, detail=skipped), None)
    alive = driver_alive() if callable(driver_alive) else driver_alive
    if alive is False:
        return TaskState(record, JobStatus(JobState.LOST, detail=_lost(store, exp_id)), None)
    waiting = ", ".join(record.depends_on)
    return TaskState(record, JobStatus(JobState.PENDING, detail=f"waiting for {waiting}"
                                       if waiting else "not submitted yet"), None)


def _lost(store: JobStore, exp_id: str) -> str:
    info = store.driver(exp_id)
    who = ("no process is recorded to submit it" if info is None else
           f"{'its launcher' if info['role'] == 'launcher' else 'the background driver'} "
           f"(pid {info['pid']}) ended before submitting it")
    return f"never submitted: {who}; run the experiment again: stoker exp rerun {exp_id}"


def driver_alive(store: JobStore, exp_id: str) -> bool:
    """Whether a process that submits this experiment's waiting tasks still runs: the one
    driver.json names, or a background driver started for it but not recorded yet (its
    launcher died between starting it and writing driver.json; it records itself as it
    starts). No driver.json: nobody will submit (a store from before driver records)."""
    from stoker.launch.executors.process import owner_alive

    info = store.driver(exp_id)
    if info is not None and owner_alive(info):
        return True
    return _driver_process_running(store, exp_id)


def _driver_process_running(store: JobStore, exp_id: str) -> bool:
    import psutil

    want = ["-m", "stoker.launch.driver", exp_id, str(store.root)]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd[1:] == want:
            return True
    return False


def experiment_states(store: JobStore, exp_id: str) -> list[TaskState]:
    """Every task's state, as ``stoker exp status`` shows it (a task never submitted by a
    submitter that is gone: LOST)."""
    alive: list[bool] = []

    def owner() -> bool:
        if not alive:  # asked once, and only when some task has no handle
            alive.append(driver_alive(store, exp_id))
        return alive[0]

    return [task_state(store, exp_id, r, owner) for r in store.tasks(exp_id)]


def drive(store: JobStore, exp_id: str, *, once: bool = False, poll: float = 0.25,
          live: dict[str, tuple[Task, Executor]] | None = None,
          on_event: Callable[[str, TaskState], None] | None = None,
          report: Callable[[str], None] | None = None) -> list[TaskState]:
    """Submit tasks whose dependencies succeeded (or that a scheduler can hold), until every
    task ended (or after one pass with ``once``). Returns the final states.

    Ctrl-C cancels the tasks that would not outlive this process anyway (local, torchrun)
    and leaves detached and scheduler jobs running (:func:`cancel_owned`).
    """
    live = live or {}
    records = store.tasks(exp_id)
    max_parallel = store.experiment(exp_id).get("max_parallel")
    seen: dict[str, JobState] = {}
    try:
        while True:
            states = {r.name: task_state(store, exp_id, r) for r in records}
            cancelled = store.is_cancelled(exp_id)
            running = sum(1 for st in states.values()
                          if st.handle is not None and not st.status.state.is_terminal)
            for r in records:
                st = states[r.name]
                if st.handle is not None or st.status.state != JobState.PENDING:
                    continue
                if cancelled:
                    store.mark_skipped(exp_id, r.folder, "not submitted: experiment cancelled")
                    states[r.name] = task_state(store, exp_id, r)
                    continue
                deps = [states[d] for d in r.depends_on]
                bad = [d for d in deps if d.status.state in (JobState.FAILED, JobState.CANCELLED,
                                                             JobState.LOST)]
                if bad:
                    store.mark_skipped(exp_id, r.folder, f"not submitted: task "
                                       f"'{bad[0].record.name}' it depends on "
                                       f"{bad[0].status.state.value.lower()}")
                    states[r.name] = task_state(store, exp_id, r)
                    continue
                if r.folder in live:
                    task, ex = live[r.folder]
                else:
                    task, ex = task_for_submit(r, store.task_dir(exp_id, r.folder))
                ready = all(d.status.state == JobState.SUCCEEDED for d in deps)
                early = ex.supports_after and all(d.handle is not None for d in deps)
                if not (ready or early) or (max_parallel and running >= max_parallel):
                    continue
                try:
                    handle = ex.submit(task, after=[d.handle for d in deps
                                                    if d.status.state != JobState.SUCCEEDED])
                except (UserError, ConfigError, OSError, RunError) as e:
                    store.mark_skipped(exp_id, r.folder, f"submission failed: {e}")
                    states[r.name] = task_state(store, exp_id, r)
                    continue
                store.set_handle(exp_id, r.folder, handle)
                kill_point("submitted")
                running += 1
                states[r.name] = TaskState(r, JobStatus(JobState.PENDING, detail="submitted"),
                                           handle)
            for name, st in states.items():
                if on_event is not None and seen.get(name) != st.status.state:
                    on_event(name, st)
                seen[name] = st.status.state
            finished = all(st.status.state.is_terminal for st in states.values())
            if once or finished:
                return list(states.values())
            time.sleep(poll)
    except KeyboardInterrupt:
        cancel_owned(store, exp_id, report)
        raise


def cancel_owned(store: JobStore, exp_id: str,
                 report: Callable[[str], None] | None = None) -> None:
    """After Ctrl-C: cancel the tasks that belong to this terminal (local, torchrun), mark
    the unsubmitted ones, and leave detached and scheduler jobs running (``report`` says
    which was done to each)."""
    say = report or (lambda msg: None)
    for r in store.tasks(exp_id):
        handle = store.handle(exp_id, r.folder)
        if handle is None:
            if store.skipped(exp_id, r.folder) is None:
                store.mark_skipped(exp_id, r.folder, "not submitted: interrupted")
            continue
        ex = executor_for(r)
        if not ex.outlives_launcher:
            say(f"cancelling {r.name} (the trainer saves a checkpoint first)...")
            ex.cancel(handle)
        else:
            say(f"{r.name} keeps running ({ex.kind}): stoker exp cancel {exp_id} {r.name}")


def main(argv: list[str]) -> int:
    exp_id, root = argv[0], argv[1]
    store = JobStore(root)
    store.set_driver(exp_id, owner_record("driver"))  # at once: the launcher may be gone
    states = drive(store, exp_id)
    for st in states:
        sys.stdout.write(f"{st.record.name}: {st.status.state.value} {st.status.detail}\n")
    return 1 if any(st.status.state == JobState.FAILED for st in states) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
