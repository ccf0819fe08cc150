"""``stoker.Experiment``: tasks with executors and dependencies, run and followed together.

    exp = stoker.Experiment("lr-study", executor="detached")
    exp.add_train("gpt-char", ["optim.lr=1e-3"], name="small-lr")
    exp.add_train("gpt-char", ["optim.lr=3e-3"], name="big-lr")
    exp.add_script("eval.py", ["--all"], name="eval", depends_on=["small-lr", "big-lr"])
    exp.run()                      # a dependency graph; or mode="sequential" / "parallel"

Every task becomes a command line with its config exported to its job folder (never a
pickled function). Tasks are submitted as soon as their dependencies succeeded (or at once
to a scheduler that can wait itself, like Slurm's afterok). A failed task cancels what
depends on it, and :meth:`Experiment.run` raises :class:`RunError` naming it. With
``detach=True`` the launcher returns at once and a small background driver submits the
remaining tasks (only when some wait for others).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from stoker.errors import ConfigError, RunError, UserError
from stoker.launch.executors import Executor, JobState, JobStatus, get_executor
from stoker.config.secrets import mask_env, mask_tree
from stoker.launch.store import JobStore, TaskRecord, slug
from stoker.launch.task import Task

__all__ = ["Experiment", "MODES", "TaskState", "drive", "experiment_states", "resolve_executor"]

log = logging.getLogger("stoker.launch")

MODES = ("graph", "sequential", "parallel")
CONFIG_FILE = "config.yaml"
COMMAND_FILE = "command.txt"


def resolve_executor(executor: Any, *, cwd: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """An executor config and how it was chosen, from a kind/profile name, a dict, a config
    model, or ``(selector, ["field=value", ...])`` as parsed from a command line."""
    from pydantic import BaseModel

    from stoker.launch.config import parse_executor_config
    from stoker.launch.profiles import ExecutorSpec, select_executor

    if executor is None:
        executor = "local"
    if isinstance(executor, str):
        return select_executor(executor, cwd=cwd), ExecutorSpec(executor).to_json()
    if isinstance(executor, tuple):
        selector, fields = executor
        spec = ExecutorSpec(selector, list(fields))
        return select_executor(selector, fields, cwd=cwd), spec.to_json()
    if isinstance(executor, BaseModel):
        return executor, ExecutorSpec(base=mask_tree(compact(executor))).to_json()
    if isinstance(executor, dict):
        cfg = parse_executor_config(dict(executor))
        return cfg, ExecutorSpec(base=mask_tree(compact(cfg))).to_json()
    raise UserError(f"executor must be a name, a dict or an executor config, not "
                    f"{type(executor).__name__}")


def compact(config: Any) -> dict[str, Any]:
    """An executor config as the fields that differ from their defaults, plus its kind."""
    return {"kind": config.kind, **config.model_dump(exclude_defaults=True)}


@dataclass
class _Spec:
    """A task before launch: its job folder does not exist yet."""

    name: str
    kind: str
    program: Callable[[Path], list[str]]
    executor: Any
    executor_spec: dict[str, Any]
    workdir: Path
    depends_on: list[str] = field(default_factory=list)
    cfg: Any = None
    run_dir: str | None = None


@dataclass
class TaskState:
    """One task's state as ``stoker exp status`` shows it."""

    record: TaskRecord
    status: JobStatus
    handle: dict[str, Any] | None


class Experiment:
    """A titled group of tasks; see the module docstring."""

    def __init__(self, title: str, *, executor: Any = "local", name: str | None = None,
                 store: JobStore | None = None, cwd: str | Path | None = None):
        self.title = title
        self.name = name or title
        self.store = store or JobStore()
        self.cwd = Path(cwd or Path.cwd()).resolve()
        self.executor, self.executor_spec = resolve_executor(executor, cwd=self.cwd)
        self._specs: list[_Spec] = []
        self.id: str | None = None
        self.argv: list[str] = list(sys.argv)

    # ------------------------------------------------------------------- adding tasks
    def _add(self, spec: _Spec) -> str:
        if any(s.name == spec.name for s in self._specs):
            raise UserError(f"experiment '{self.title}' already has a task named '{spec.name}'; "
                            "give each task its own name=")
        self._specs.append(spec)
        return spec.name

    def _executor(self, executor: Any) -> tuple[Any, dict[str, Any]]:
        if executor is None:
            return self.executor, self.executor_spec
        return resolve_executor(executor, cwd=self.cwd)

    def add_train(self, recipe: Any, overrides: Sequence[str] = (), *, name: str | None = None,
                  executor: Any = None, depends_on: Sequence[str] = (),
                  check_targets: bool = True) -> str:
        """A ``stoker train`` task: a recipe name, a config file, or a composed config.

        The config is composed and validated now (a typo fails here, before anything is
        submitted) and exported to the task's ``config.yaml``; the job runs
        ``python -m stoker train JOBDIR/config.yaml --yes``. Without ``output_dir`` the run
        directory is fixed now (``outputs/<name>/<timestamp>``), so ``stoker exp rerun``
        resumes that run instead of starting another. ``check_targets=False``: leave the
        ``_target_`` nodes (optimizer, losses: torch) to the job's own check.
        """
        from stoker.launch.builders import train_config

        cfg, run_dir = train_config(recipe, overrides, cwd=self.cwd, check_targets=check_targets)
        ex, ex_spec = self._executor(executor)
        task_name = name or (slug(str(recipe)) if isinstance(recipe, (str, Path)) else "train")
        return self._add(_Spec(
            task_name, "train",
            lambda jd: ["-m", "stoker", "train", str(jd / CONFIG_FILE), "--yes"],
            ex, ex_spec, self.cwd, list(depends_on), cfg, run_dir))

    def add_entrypoint(self, fn: Callable[..., Any], overrides: Sequence[str] = (), *,
                       config: str | Path | None = None, name: str | None = None,
                       executor: Any = None, depends_on: Sequence[str] = ()) -> str:
        """A task running ``fn``'s script (which calls ``stoker.main(fn)``) with the config
        composed from ``fn``'s defaults, ``config`` and ``overrides``:
        ``python SCRIPT -c JOBDIR/config.yaml --yes executor=local``."""
        from stoker.launch.builders import entrypoint_config, script_program

        from stoker.config.validation import check_resolved

        cfg, schema = entrypoint_config(fn, overrides, config)
        problems, _ = check_resolved(cfg, schema)
        if problems:
            raise ConfigError(problems=problems)
        head = script_program(fn)
        ex, ex_spec = self._executor(executor)
        return self._add(_Spec(
            name or fn.__name__, "entrypoint",
            lambda jd: [*head, "-c", str(jd / CONFIG_FILE), "--yes", "executor=local"],
            ex, ex_spec, self.cwd, list(depends_on), cfg))

    def add_script(self, script: str | Path, args: Sequence[str] = (), *,
                   name: str | None = None, executor: Any = None,
                   depends_on: Sequence[str] = ()) -> str:
        """A task running ``python SCRIPT ARGS...`` (``-m module`` works too) in this
        directory."""
        script = str(script)
        if script == "-m" or script.startswith("-"):
            head = [script]
        else:
            path = (self.cwd / script).resolve()
            if not path.is_file():
                raise UserError(f"script not found: {script} (looked in {self.cwd})")
            head = [str(path)]
        prog = [*head, *map(str, args)]
        ex, ex_spec = self._executor(executor)
        return self._add(_Spec(name or slug(Path(script).stem), "script", lambda jd: list(prog),
                               ex, ex_spec, self.cwd, list(depends_on)))

    # ------------------------------------------------------------------- launching
    def _ordered(self, mode: str) -> list[_Spec]:
        if mode not in MODES:
            raise UserError(f"mode={mode!r}; use one of {', '.join(MODES)}")
        if not self._specs:
            raise UserError(f"experiment '{self.title}' has no tasks; add some with add_train, "
                            "add_entrypoint or add_script")
        names = [s.name for s in self._specs]
        specs = [_Spec(**{**s.__dict__}) for s in self._specs]
        if mode == "sequential":
            for prev, s in zip(specs, specs[1:]):
                s.depends_on = sorted({*s.depends_on, prev.name})
        elif mode == "parallel":
            with_deps = [s.name for s in specs if s.depends_on]
            if with_deps:
                raise UserError(f"mode='parallel' runs every task at once, but {with_deps[0]} "
                                "has depends_on; use mode='graph'")
        for s in specs:
            for d in s.depends_on:
                if d not in names:
                    from stoker.config.targets import suggest

                    raise UserError(f"task '{s.name}' depends on '{d}', which is not a task of "
                                    f"this experiment.{suggest(d, names)}")
        _check_acyclic({s.name: s.depends_on for s in specs})
        return specs

    def _tasks(self, specs: list[_Spec], exp_id: str) -> list[tuple[_Spec, Task, Executor]]:
        folders: set[str] = set()
        out = []
        for s in specs:
            folder = slug(s.name)
            while folder in folders:
                folder += "_"
            folders.add(folder)
            job_dir = self.store.task_dir(exp_id, folder)
            task = Task(s.name, s.program(job_dir), job_dir, s.workdir,
                        s.executor.job_env(), list(s.depends_on))
            ex = get_executor(s.executor)
            ex.check(task)
            out.append((s, task, ex))
        return out

    def dryrun(self, mode: str = "graph") -> str:
        """Exactly what would run, task by task; nothing is written or submitted."""
        exp_id = self.store.new_id(self.name)
        parts = [f"experiment {self.title!r} (would be {exp_id}), mode={mode}"]
        for s, task, ex in self._tasks(self._ordered(mode), exp_id):
            deps = f" (after {', '.join(task.depends_on)})" if task.depends_on else ""
            parts.append(f"\n== task {task.name}{deps}: executor {ex.kind}")
            if s.cfg is not None:
                parts.append(f"# {task.job_dir / CONFIG_FILE}: the config above (resolved)")
            parts.append(ex.describe(task))
        return "\n".join(parts)

    def check(self, mode: str = "graph") -> None:
        """Everything :meth:`launch` would refuse (tasks, dependencies, what each executor
        can run here), without writing anything."""
        self._tasks(self._ordered(mode), self.store.new_id(self.name))

    def launch(self, *, mode: str = "graph", detach: bool = False) -> str:
        """Write every task's folder, submit what can start now, return the experiment id.

        With ``detach`` a background driver submits the rest; otherwise call
        :func:`drive` (``run`` does).
        """
        from stoker.config.export import save

        specs = self._ordered(mode)
        for _ in range(20):
            exp_id = self.store.new_id(self.name)
            tasks = self._tasks(specs, exp_id)  # executor checks: before anything is written
            try:
                self.store.create(exp_id, {
                    "title": self.title, "name": self.name, "mode": mode, "detach": detach,
                    "tasks": [t.job_dir.name for _, t, _ in tasks], "argv": self.argv,
                    "cwd": str(self.cwd)})
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise RunError(f"could not create a new experiment folder under {self.store.root}")
        self.id = exp_id
        for s, task, ex in tasks:
            task.stdout.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(s.cfg, Path):  # a rerun: the same file
                shutil.copyfile(s.cfg, task.job_dir / CONFIG_FILE)
            elif s.cfg is not None:
                save(s.cfg, task.job_dir / CONFIG_FILE)
            described = ex.describe(task)
            from stoker.atomic import atomic_write_text

            atomic_write_text(task.job_dir / COMMAND_FILE, described + "\n")
            self.store.write_task(exp_id, TaskRecord(
                name=task.name, folder=task.job_dir.name, program=task.program,
                workdir=str(task.workdir), executor=mask_tree(compact(s.executor)),
                spec=s.executor_spec, env=mask_env(task.env), depends_on=task.depends_on,
                kind=s.kind, run_dir=s.run_dir, command=described))
        live = {t.job_dir.name: (t, ex) for _, t, ex in tasks}
        pending = drive(self.store, exp_id, once=True, live=live)
        if any(st.status.state == JobState.PENDING and st.handle is None for st in pending):
            if detach:
                start_driver(self.store, exp_id)
            else:
                self.store.set_driver(exp_id, _me())
        self._live = live
        return exp_id

    def run(self, *, mode: str = "graph", detach: bool = False,
            on_event: Callable[[str, TaskState], None] | None = None) -> str:
        """Launch, then (unless ``detach``) submit and wait until every task ended.

        Raises :class:`RunError` naming the first failed task; returns the experiment id.
        """
        exp_id = self.launch(mode=mode, detach=detach)
        if detach:
            return exp_id
        states = drive(self.store, exp_id, live=self._live, on_event=on_event)
        raise_for_failures(exp_id, states)
        return exp_id


def rerun(store: JobStore, exp_id: str, *, detach: bool = False,
          name: str | None = None) -> str:
    """Launch a stored experiment's tasks again as a new experiment; returns its id.

    Same configs (copied), same command lines (pointing at the new job folders), executors
    chosen again the same way, same dependencies. A training with a pinned run directory
    resumes it (or reports it finished).
    """
    meta = store.experiment(exp_id)
    exp = Experiment(meta.get("title", exp_id), executor="local", name=name or meta.get("name"),
                     store=store, cwd=meta.get("cwd"))
    exp.argv = list(meta.get("argv") or [])
    for r in store.tasks(exp_id):
        old = str(store.task_dir(exp_id, r.folder))
        cfg_file = store.task_dir(exp_id, r.folder) / CONFIG_FILE
        config = stored_executor_config(r)
        exp._add(_Spec(
            r.name, r.kind,
            lambda jd, p=list(r.program), o=old: [a.replace(o, str(jd)) for a in p],
            config, r.spec or {}, Path(r.workdir), list(r.depends_on),
            cfg_file if cfg_file.is_file() else None, r.run_dir))
    return exp.launch(mode="graph", detach=detach)


def raise_for_failures(exp_id: str, states: list[TaskState]) -> None:
    for st in states:
        if st.status.state == JobState.FAILED:
            code = f" (exit code {st.status.exit_code})" if st.status.exit_code is not None else ""
            detail = f": {st.status.detail}" if st.status.detail else ""
            raise RunError(f"experiment {exp_id}: task '{st.record.name}' failed{code}{detail}; "
                           f"its output: stoker exp logs {exp_id} {st.record.name}")


def _check_acyclic(deps: dict[str, list[str]]) -> None:
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            loop = " -> ".join([*path[path.index(n):], n])
            raise UserError(f"tasks depend on each other in a cycle: {loop}")
        state[n] = 1
        for d in deps.get(n, []):
            visit(d, [*path, n])
        state[n] = 2

    for n in deps:
        visit(n, [])


def _me() -> dict[str, Any]:
    import psutil

    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


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


# ------------------------------------------------------------------------ the driver
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
    task = Task(record.name, list(record.program), job_dir, workdir, cfg.job_env(),
                list(record.depends_on))
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
          on_event: Callable[[str, TaskState], None] | None = None) -> list[TaskState]:
    """Submit tasks whose dependencies succeeded (or that a scheduler can hold), until every
    task ended (or after one pass with ``once``). Returns the final states.

    Ctrl-C cancels the tasks that would not outlive this process anyway (local, torchrun)
    and leaves detached and scheduler jobs running.
    """
    live = live or {}
    records = store.tasks(exp_id)
    seen: dict[str, JobState] = {}
    try:
        while True:
            states = {r.name: task_state(store, exp_id, r) for r in records}
            cancelled = store.is_cancelled(exp_id)
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
                if not (ready or early):
                    continue
                try:
                    handle = ex.submit(task, after=[d.handle for d in deps
                                                    if d.status.state != JobState.SUCCEEDED])
                except (UserError, ConfigError, OSError, RunError) as e:
                    store.mark_skipped(exp_id, r.folder, f"submission failed: {e}")
                    states[r.name] = task_state(store, exp_id, r)
                    continue
                store.set_handle(exp_id, r.folder, handle)
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
        for r in records:
            handle = store.handle(exp_id, r.folder)
            if handle is None:
                if store.skipped(exp_id, r.folder) is None:
                    store.mark_skipped(exp_id, r.folder, "not submitted: interrupted")
                continue
            ex = executor_for(r)
            if not ex.outlives_launcher:
                ex.cancel(handle)
        raise
