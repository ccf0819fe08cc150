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
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from stoker.config.secrets import mask_env, mask_tree
from stoker.errors import ConfigError, RunError, UserError
from stoker.launch.cores import share_cores, thread_env
from stoker.launch.driver import (TaskState, drive, owner_record, raise_for_failures,
                                  start_driver, stored_executor_config)
from stoker.launch.executors import Executor, JobState, get_executor
from stoker.launch.store import JobStore, TaskRecord, slug
from stoker.launch.task import Task
from stoker.launch.testhook import kill_point

__all__ = ["Experiment", "MODES", "rerun", "resolve_executor"]

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
    point: dict[str, str] | None = None
    """A sweep point's swept values (``optim.lr`` -> ``0.001``)."""
    threads: int | None = None
    """Threads the task may use when it shares this machine's cores (launch.cores)."""
    fn: Callable[..., Any] | None = None
    """An entrypoint task's function."""
    arguments: dict[str, Any] | None = None
    """Its validated, resolved arguments when the job may skip composing them again
    (:mod:`stoker.launch.resolved`)."""


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
        self.sweep: dict[str, Any] | None = None  # set by add_*_sweep: keys and point count

    # ------------------------------------------------------------------- adding tasks
    def _add(self, spec: _Spec) -> str:
        if any(s.name == spec.name for s in self._specs):
            raise UserError(f"experiment '{self.title}' already has a task named '{spec.name}'; "
                            "give each task its own name=")
        self._specs.append(spec)
        return spec.name

    def task_names(self) -> list[str]:
        """The names of the tasks added so far, in order."""
        return [s.name for s in self._specs]

    def remove_tasks(self, names: Sequence[str]) -> None:
        """Forget tasks added before launch (a sweep whose other points were refused)."""
        self._specs = [s for s in self._specs if s.name not in set(names)]

    def _executor(self, executor: Any) -> tuple[Any, dict[str, Any]]:
        if executor is None:
            return self.executor, self.executor_spec
        return resolve_executor(executor, cwd=self.cwd)

    def add_train(self, recipe: Any, overrides: Sequence[str] = (), *, name: str | None = None,
                  executor: Any = None, depends_on: Sequence[str] = (),
                  check_targets: bool = True, point: dict[str, str] | None = None) -> str:
        """A ``stoker train`` task: a recipe name, a config file, or a composed config.

        The config is composed and validated now (a typo fails here, before anything is
        submitted) and exported to the task's ``config.yaml``; the job runs
        ``python -m stoker train JOBDIR/config.yaml --yes``. Without ``output_dir`` the run
        directory is fixed now (``outputs/<name>/<timestamp>``), so ``stoker exp rerun``
        resumes that run instead of starting another. ``check_targets=False``: leave the
        ``_target_`` nodes (optimizer, losses: torch) to the job's own check. ``point``: the
        values of the sweep point this task runs (kept in the store, shown by status).
        """
        from stoker.launch.builders import train_config

        cfg, run_dir = train_config(recipe, overrides, cwd=self.cwd, check_targets=check_targets)
        ex, ex_spec = self._executor(executor)
        task_name = name or (slug(str(recipe)) if isinstance(recipe, (str, Path)) else "train")
        return self._add(_Spec(
            task_name, "train",
            lambda jd: ["-m", "stoker", "train", str(jd / CONFIG_FILE), "--yes"],
            ex, ex_spec, self.cwd, list(depends_on), cfg, run_dir, point))

    def add_entrypoint(self, fn: Callable[..., Any], overrides: Sequence[str] = (), *,
                       config: str | Path | None = None, name: str | None = None,
                       executor: Any = None, depends_on: Sequence[str] = (),
                       point: dict[str, str] | None = None) -> str:
        """A task running ``fn``'s script (which calls ``stoker.main(fn)``) with the config
        composed from ``fn``'s defaults, ``config`` and ``overrides``:
        ``python SCRIPT -c JOBDIR/config.yaml --yes executor=local``. A function with an
        ``output_dir`` argument has it recorded as the task's run directory."""
        from stoker.launch.builders import entrypoint_config, script_program

        from stoker.config.validation import check_resolved
        from stoker.launch.resolved import plain_arguments

        cfg, schema = entrypoint_config(fn, overrides, config)
        problems, resolved = check_resolved(cfg, schema)
        if problems:
            raise ConfigError(problems=problems)
        head = script_program(fn)
        ex, ex_spec = self._executor(executor)
        out = cfg.get("output_dir") if "output_dir" in cfg else None
        run_dir = str(self.cwd / str(out)) if isinstance(out, (str, Path)) else None
        return self._add(_Spec(
            name or fn.__name__, "entrypoint",
            lambda jd: [*head, "-c", str(jd / CONFIG_FILE), "--yes", "executor=local"],
            ex, ex_spec, self.cwd, list(depends_on), cfg, run_dir, point, fn=fn,
            arguments=plain_arguments(cfg, resolved)))

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

    def add_train_sweep(self, recipe: Any, overrides: Sequence[str], *, executor: Any = None,
                        check_targets: bool = True, imports: Sequence[str] = ()) -> list[str]:
        """One ``stoker train`` task per point of the sweep in ``overrides`` (Hydra's
        multirun grammar: ``optim.lr=1e-3,3e-3 seed=range(1,3)``), each with its own run
        directory. Every point is validated before any is added; see
        :mod:`stoker.launch.sweep`."""
        from stoker.launch.sweep import add_train_sweep

        return add_train_sweep(self, recipe, overrides, executor=executor,
                               check_targets=check_targets, imports=imports)

    def add_entrypoint_sweep(self, fn: Callable[..., Any], overrides: Sequence[str], *,
                             config: str | Path | None = None, executor: Any = None) -> list[str]:
        """One task of ``fn``'s script per point of the sweep in ``overrides``."""
        from stoker.launch.sweep import add_entrypoint_sweep

        return add_entrypoint_sweep(self, fn, overrides, config=config, executor=executor)

    # ------------------------------------------------------------------- launching
    def _ordered(self, mode: str, max_parallel: int | None = None) -> list[_Spec]:
        if max_parallel is not None and max_parallel < 1:
            raise UserError(f"max_parallel={max_parallel}: run at least 1 task at a time "
                            "(None: no limit)")
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
        share_cores(specs, mode, max_parallel)
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
                        {**thread_env(s.threads), **s.executor.job_env()}, list(s.depends_on),
                        s.run_dir)
            ex = get_executor(s.executor)
            ex.check(task)
            out.append((s, task, ex))
        return out

    def dryrun(self, mode: str = "graph", *, max_parallel: int | None = None) -> str:
        """Exactly what would run, task by task; nothing is written or submitted."""
        exp_id = self.store.new_id(self.name)
        specs = self._ordered(mode, max_parallel)
        tasks = self._tasks(specs, exp_id)
        at_most = f", at most {max_parallel} at once" if max_parallel else ""
        parts = [f"experiment {self.title!r} (would be {exp_id}), mode={mode}{at_most}"]
        if self.sweep:
            parts.append(_sweep_table(self.sweep, specs))
        arrays = _array_groups(tasks)
        in_array = {id(t) for group in arrays for _, t, _ in group}
        for group in arrays:
            ex = group[0][2]
            names = ", ".join(t.name for _, t, _ in group)
            parts.append(f"\n== tasks {names}: ONE job array of {len(group)} ({ex.kind})")
            parts.append(ex.describe_array([t for _, t, _ in group], max_parallel=max_parallel))
        for s, task, ex in tasks:
            if id(task) in in_array:
                continue
            deps = f" (after {', '.join(task.depends_on)})" if task.depends_on else ""
            parts.append(f"\n== task {task.name}{deps}: executor {ex.kind}")
            if s.cfg is not None:
                what = ("the config above (resolved)" if not self.sweep
                        else "this point's config (the overrides above applied, resolved)")
                parts.append(f"# {task.job_dir / CONFIG_FILE}: {what}")
            parts.append(ex.describe(task))
        return "\n".join(parts)

    def check(self, mode: str = "graph", *, max_parallel: int | None = None) -> None:
        """Everything :meth:`launch` would refuse (tasks, dependencies, what each executor
        can run here), without writing anything."""
        self._tasks(self._ordered(mode, max_parallel), self.store.new_id(self.name))

    def launch(self, *, mode: str = "graph", detach: bool = False,
               max_parallel: int | None = None) -> str:
        """Write every task's folder, submit what can start now, return the experiment id.

        With ``detach`` a background driver submits the rest; otherwise call
        :func:`drive` (``run`` does). ``max_parallel``: at most this many tasks run at once
        (a Slurm job array gets it as its ``%N`` limit); tasks sharing this machine share
        its cores (:mod:`stoker.launch.cores`). Independent tasks with one executor that
        submits arrays (Slurm) become ONE job array.

        The store is written in an order that a launcher killed at any moment leaves
        readable (:mod:`stoker.launch.store`): this process as the submitter, the task
        records, experiment.json (the commit), then submissions.
        """
        specs = self._ordered(mode, max_parallel)
        for _ in range(20):
            exp_id = self.store.new_id(self.name)
            tasks = self._tasks(specs, exp_id)  # executor checks: before anything is written
            try:
                self.store.create(exp_id, owner_record("launcher"))
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise RunError(f"could not create a new experiment folder under {self.store.root}")
        kill_point("launch-created")
        try:
            self._record(exp_id, tasks)
            self.store.commit(exp_id, {
                "title": self.title, "name": self.name, "mode": mode, "detach": detach,
                "tasks": [t.job_dir.name for _, t, _ in tasks],
                "task_names": [t.name for _, t, _ in tasks], "argv": self.argv,
                "cwd": str(self.cwd), "max_parallel": max_parallel, "sweep": self.sweep})
        except BaseException:
            # Not committed, so nothing was submitted: leave no half-written folder behind.
            shutil.rmtree(self.store.path(exp_id), ignore_errors=True)
            raise
        kill_point("launch-committed")
        self.id = exp_id
        live = {t.job_dir.name: (t, ex) for _, t, ex in tasks}
        for group in _array_groups(tasks):
            _submit_array(self.store, exp_id, group, max_parallel)
        pending = drive(self.store, exp_id, once=True, live=live)
        if detach and any(st.status.state == JobState.PENDING and st.handle is None
                          for st in pending):
            start_driver(self.store, exp_id)  # otherwise this process (driver.json) submits
        self._live = live
        return exp_id

    def _record(self, exp_id: str, tasks: list[tuple[_Spec, Task, Executor]]) -> None:
        """Each task's folder: its config, command.txt and task.json (before the commit)."""
        from stoker.atomic import atomic_write_text
        from stoker.config.export import save
        from stoker.launch.resolved import resolved_path, write_resolved

        for s, task, ex in tasks:
            task.stdout.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(s.cfg, Path):  # a rerun: the same file (and its resolved arguments)
                shutil.copyfile(s.cfg, task.job_dir / CONFIG_FILE)
                if resolved_path(s.cfg).is_file():
                    shutil.copyfile(resolved_path(s.cfg), resolved_path(task.job_dir / CONFIG_FILE))
            elif s.cfg is not None:
                save(s.cfg, task.job_dir / CONFIG_FILE)
                if s.arguments is not None and s.fn is not None:
                    write_resolved(task.job_dir / CONFIG_FILE, s.fn, s.arguments)
            described = ex.describe(task)
            atomic_write_text(task.job_dir / COMMAND_FILE, described + "\n")
            self.store.write_task(exp_id, TaskRecord(
                name=task.name, folder=task.job_dir.name, program=task.program,
                workdir=str(task.workdir), executor=mask_tree(compact(s.executor)),
                spec=s.executor_spec, env=mask_env(task.env), depends_on=task.depends_on,
                kind=s.kind, run_dir=s.run_dir, command=described, point=s.point,
                threads=s.threads))
            kill_point("launch-task-recorded")

    def run(self, *, mode: str = "graph", detach: bool = False,
            on_event: Callable[[str, TaskState], None] | None = None,
            max_parallel: int | None = None) -> str:
        """Launch, then (unless ``detach``) submit and wait until every task ended.

        Raises :class:`RunError` naming the first failed task; returns the experiment id.
        """
        exp_id = self.launch(mode=mode, detach=detach, max_parallel=max_parallel)
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
            cfg_file if cfg_file.is_file() else None, r.run_dir, r.point, r.threads))
    exp.sweep = meta.get("sweep")
    return exp.launch(mode="graph", detach=detach, max_parallel=meta.get("max_parallel"))


def _array_groups(tasks: list[tuple[_Spec, Task, Executor]]
                  ) -> list[list[tuple[_Spec, Task, Executor]]]:
    """Independent tasks that share one executor config whose executor submits arrays
    (Slurm): each such group of two or more is submitted as ONE job array."""
    import json

    groups: dict[str, list[tuple[_Spec, Task, Executor]]] = {}
    for item in tasks:
        s, task, ex = item
        if task.depends_on or type(ex).submit_array is Executor.submit_array:
            continue
        key = json.dumps([ex.kind, s.executor.model_dump(mode="json")], sort_keys=True,
                         default=str)
        groups.setdefault(key, []).append(item)
    return [g for g in groups.values() if len(g) > 1]


def _submit_array(store: JobStore, exp_id: str, group: list[tuple[_Spec, Task, Executor]],
                  max_parallel: int | None) -> None:
    ex = group[0][2]
    tasks = [t for _, t, _ in group]
    extra = {"max_parallel": max_parallel} if max_parallel else {}
    try:
        handles = ex.submit_array(tasks, **extra)
    except (UserError, ConfigError, OSError, RunError) as e:
        for t in tasks:
            store.mark_skipped(exp_id, t.job_dir.name, f"submission failed: {e}")
        return
    for t, handle in zip(tasks, handles):
        store.set_handle(exp_id, t.job_dir.name, handle)
        kill_point("submitted")


def _sweep_table(sweep: dict[str, Any], specs: list[_Spec]) -> str:
    """The points of a sweep and where each one's run goes (``--dryrun -m``)."""
    keys = ", ".join(sweep.get("keys") or [])
    lines = [f"sweep: {len(specs)} points over {keys}"]
    width = max(len(s.name) for s in specs)
    for i, s in enumerate(specs):
        threads = f"  threads {s.threads}" if s.threads else ""
        run = f"  -> {s.run_dir}" if s.run_dir else ""
        lines.append(f"  [{i}] {s.name.ljust(width)}{run}{threads}")
    return "\n".join(lines)


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
