"""Following and driving a stored experiment: each task's state, submitting tasks as their
dependencies succeed, cancelling what this terminal owns on Ctrl-C.

Also ``python -m stoker.launch.driver EXP_ID STORE_ROOT``: submit a detached experiment's
waiting tasks, then exit. Started in its own session by ``Experiment.launch(detach=True)``
only when some task waits for another and its executor cannot make the scheduler wait. Its
output goes to ``driver.log`` in the experiment folder. Everything here reads the job store,
so it works from any process (``stoker exp status`` in a new terminal).
"""
from __future__ import annotations

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

__all__ = ["TaskState", "cancel_owned", "drive", "experiment_states", "raise_for_failures",
           "task_state"]


@dataclass
class TaskState:
    """One task's state as ``stoker exp status`` shows it."""

    record: TaskRecord
    status: JobStatus
    handle: dict[str, Any] | None


def raise_for_failures(exp_id: str, states: list[TaskState]) -> None:
    for st in states:
        if st.status.state == JobState.FAILED:
            code = f" (exit code {st.status.exit_code})" if st.status.exit_code is not None else ""
            detail = f": {st.status.detail}" if st.status.detail else ""
            raise RunError(f"experiment {exp_id}: task '{st.record.name}' failed{code}{detail}; "
                           f"its output: stoker exp logs {exp_id} {st.record.name}")


def start_driver(store: JobStore, exp_id: str) -> None:
    """Start ``python -m stoker.launch.driver ID`` in its own session (it outlives us).

    It keeps the launcher's environment: it is stoker's own process, not a job, and it needs
    the variables that profiles name to give them to the tasks it submits.
    """
    import psutil

    path = store.path(exp_id)
    with open(path / "driver.log", "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "stoker.launch.driver", exp_id,
                                 str(store.root)], stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=log_file, start_new_session=True, close_fds=True)
    store.set_driver(exp_id, {"pid": proc.pid,
                              "create_time": psutil.Process(proc.pid).create_time()})


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
               driver_alive: bool | None = None) -> TaskState:
    handle = store.handle(exp_id, record.folder)
    if handle is not None:
        return TaskState(record, executor_for(record).status(handle), handle)
    skipped = store.skipped(exp_id, record.folder)
    if skipped is not None:
        state = JobState.FAILED if skipped.startswith("submission failed") else JobState.CANCELLED
        return TaskState(record, JobStatus(state, detail=skipped), None)
    if driver_alive is False:
        return TaskState(record, JobStatus(JobState.CANCELLED, detail="not submitted: the "
                         "process that was to submit it ended (stoker exp rerun ID starts over)"),
                         None)
    waiting = ", ".join(record.depends_on)
    return TaskState(record, JobStatus(JobState.PENDING, detail=f"waiting for {waiting}"
                                       if waiting else "not submitted yet"), None)


def driver_alive(store: JobStore, exp_id: str) -> bool | None:
    info = store.driver(exp_id)
    if info is None:
        return None
    from stoker.launch.executors.process import process_alive

    return process_alive(int(info["pid"]), float(info["create_time"]))


def experiment_states(store: JobStore, exp_id: str) -> list[TaskState]:
    alive = driver_alive(store, exp_id)
    return [task_state(store, exp_id, r, alive) for r in store.tasks(exp_id)]


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
                bad = [d for d in deps if d.status.state in (JobState.FAILED, JobState.CANCELLED)]
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
    states = drive(JobStore(root), exp_id)
    for st in states:
        sys.stdout.write(f"{st.record.name}: {st.status.state.value} {st.status.detail}\n")
    return 1 if any(st.status.state == JobState.FAILED for st in states) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
