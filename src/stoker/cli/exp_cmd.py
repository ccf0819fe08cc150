"""``stoker exp list|status|logs|cancel|rerun`` and launching with ``executor=...``.

``stoker train ... executor=detached`` and every ``@stoker.entrypoint`` script pass
through :func:`split_launch` / :func:`launch`: the default (local) executor keeps today's
in-process run; any other prints ``--dryrun`` output or submits and follows the job.
Only typer is imported at module level; the launch library loads inside the commands.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Sequence

import typer

EXIT_FAILED = 1


def register(app: typer.Typer) -> None:
    exp = typer.Typer(help="Experiments launched with an executor (executor=detached, "
                      "torchrun, a profile...): list, status, logs, cancel, rerun.",
                      no_args_is_help=True)
    exp.command("list", help="Recent experiments, newest first.")(list_cmd)
    exp.command("status", help="Each task's state, exit code and run directory; exit 1 "
                "when a task failed.")(status_cmd)
    exp.command("logs", help="A task's output (stdout, then stderr); --follow until it "
                "ends and exit with its code.")(logs_cmd)
    exp.command("cancel", help="Cancel an experiment's tasks (or one): SIGTERM lets the "
                "trainer save a checkpoint.")(cancel_cmd)
    exp.command("rerun", help="Launch an experiment's tasks again (same configs, commands "
                "and executors); a training resumes its run directory.")(rerun_cmd)
    app.add_typer(exp, name="exp")


# ------------------------------------------------------------------------ launching
def split_launch(overrides: Sequence[str], *, detach: bool = False, name: str | None = None,
                 default: str | None = None, keep_local: bool = False) -> tuple[list[str], Any]:
    """Take ``executor=...``/``executor.*=...`` out of ``overrides``.

    Returns the other overrides and ``(selector, fields)`` to launch with, or None to run
    in this process (the local executor without --detach, exactly as before; with
    ``keep_local`` a sweep gets the local executor's selector too: its points run as child
    processes).
    """
    from stoker.errors import UserError
    from stoker.launch.profiles import split_executor_args

    rest, selector, fields = split_executor_args(list(overrides or ()))
    if selector is None and not fields and not detach and default in (None, "local"):
        return rest, (("local", []) if keep_local else None)
    if selector is None:
        selector = default or ("detached" if detach else "local")
    from stoker.launch.profiles import select_executor

    config = select_executor(selector, fields)
    if config.kind == "local":
        if detach:
            raise UserError(f"--detach with executor={selector} (local): a local run stays in "
                            "this terminal; use executor=detached to run in the background")
        return rest, ((selector, fields) if keep_local else None)
    return rest, (selector, fields)


def launch_train(cfg: Any, source: str, executor: Any, *, name: str | None, detach: bool,
                 dryrun: bool, yes: bool, to_yaml: str | None = None,
                 to_toml: str | None = None, to_json: str | None = None) -> int:
    """``stoker train SOURCE ... executor=X``: one ``train`` task, launched or dry-run."""
    from stoker.cli.front_door import run_front_door
    from stoker.train.recipe import recipe_schema
    from stoker.train.recipe_config import recipe_problems

    TrainRecipe = recipe_schema()  # noqa: N806 - with the user's registered kinds
    title = f"stoker train {source}"
    if to_yaml or to_toml or to_json:  # an export never launches
        run_front_door(cfg, to_yaml=to_yaml, to_toml=to_toml, to_json=to_json, title=title,
                       schema=TrainRecipe)
        return 0
    from stoker.launch.experiment import Experiment

    exp = Experiment(name or str(cfg.get("name") or source), executor=executor)
    # Targets (torch.optim..., losses) are checked by --dryrun, the confirmation on a
    # terminal, and the job itself: submitting does not pay for importing torch.
    exp.add_train(cfg, name="train", check_targets=False)
    return _launch(exp, lambda: run_front_door(cfg, dryrun=dryrun, yes=yes, title=title,
                                               schema=TrainRecipe, check=recipe_problems),
                   detach=detach, dryrun=dryrun, yes=yes)


def launch_entrypoint(fn: Callable[..., Any], cfg: Any, schema: Any, executor: Any, *,
                      overrides: Sequence[str], config: str | None, name: str | None,
                      detach: bool, dryrun: bool, yes: bool, title: str) -> int:
    """``python script.py ... executor=X``: the script again with its exported config."""
    from stoker.cli.front_door import run_front_door
    from stoker.launch.experiment import Experiment

    exp = Experiment(name or fn.__name__, executor=executor)
    exp.add_entrypoint(fn, overrides, config=config, name=fn.__name__)
    return _launch(exp, lambda: run_front_door(cfg, dryrun=dryrun, yes=yes, title=title,
                                               schema=schema),
                   detach=detach, dryrun=dryrun, yes=yes)


def launch_sweep(kind: str, target: Any, overrides: Sequence[str], executor: Any, *,
                 name: str | None, detach: bool, dryrun: bool, yes: bool,
                 parallel: int | None, config: str | None = None, title: str,
                 imports: Sequence[str] = ()) -> int:
    """``-m``: one task per point of the sweep in ``overrides`` (``kind`` "train": ``target``
    is the recipe; "entrypoint": the function), launched with ``executor`` (default local:
    child processes, one point at a time unless ``--parallel N``)."""
    from stoker.launch.cores import HOST_KINDS
    from stoker.launch.experiment import Experiment

    exp = Experiment(name or title, executor=executor)
    if kind == "train":
        # Every point is checked in full, _target_ nodes too (that imports torch), before
        # anything is submitted: a bad value would otherwise fail after other points ran.
        exp.add_train_sweep(target, overrides, check_targets=True, imports=imports)
    else:
        exp.add_entrypoint_sweep(target, overrides, config=config)
    if parallel is None and exp.executor.kind in HOST_KINDS:
        parallel = 1  # this machine's cores: one point at a time unless asked
    return _launch(exp, lambda: _confirm_sweep(exp, parallel), detach=detach, dryrun=dryrun,
                   yes=yes, max_parallel=parallel)


def _confirm_sweep(exp: Any, parallel: int | None) -> bool:
    """On a terminal without --yes: show the points, ask once."""
    if not (sys.stdin is not None and sys.stdin.isatty()):
        return True
    from rich.prompt import Confirm

    sys.stdout.write(exp.dryrun(max_parallel=parallel).split("\n== ", 1)[0] + "\n")
    return bool(Confirm.ask("Run?", default=True))


def _launch(exp: Any, front_door: Callable[[], bool], *, detach: bool, dryrun: bool,
            yes: bool, max_parallel: int | None = None) -> int:
    exp.check(max_parallel=max_parallel)  # executor refusals (nproc_per_node, ...) first
    interactive = not yes and sys.stdin is not None and sys.stdin.isatty()
    go = front_door() if (dryrun and not exp.sweep) or interactive else True
    if dryrun:
        sys.stdout.write(exp.dryrun(max_parallel=max_parallel)
                         + "\nDry run: nothing was submitted.\n")
        return 0
    if not go:
        return 0
    detach = detach or exp.executor.kind == "detached"
    exp_id = exp.launch(detach=detach, max_parallel=max_parallel)
    return _after_launch(exp.store, exp_id, detach)


def _after_launch(store: Any, exp_id: str, detach: bool) -> int:
    from stoker.launch.driver import experiment_states

    states = experiment_states(store, exp_id)
    _err(f"launched experiment {exp_id}")
    for st in states:
        if st.record.run_dir:
            _err(f"  run directory: {st.record.run_dir}")
    if detach:
        _err(f"  follow it:  stoker exp logs {exp_id} --follow\n"
             f"  status:     stoker exp status {exp_id}\n"
             f"  cancel it:  stoker exp cancel {exp_id}")
        return 0
    return _follow_foreground(store, exp_id)


def _follow_foreground(store: Any, exp_id: str) -> int:
    """Tail a one-task launch, or report an experiment's tasks as they change; Ctrl-C
    cancels what belongs to this terminal (local, torchrun)."""
    from stoker.errors import RunError
    from stoker.launch.driver import drive, raise_for_failures

    records = store.tasks(exp_id)
    try:
        if len(records) == 1:
            return _follow_task(store, exp_id, records[0].name, wait=True)

        def event(name: str, st: Any) -> None:
            _err(f"[{time.strftime('%H:%M:%S')}] {name}: {st.status.state.value}"
                 + (f" ({st.status.detail})" if st.status.detail else ""))

        states = drive(store, exp_id, on_event=event, report=_err)
    except KeyboardInterrupt:  # drive() has cancelled what this terminal owns
        _err(f"interrupted; experiment {exp_id}: stoker exp status {exp_id}")
        return 130
    _print_status(store, exp_id, states)
    try:
        raise_for_failures(exp_id, states)
    except RunError as e:
        _err(f"error: {e}")
        return EXIT_FAILED
    return 0


def _exit_code(status: Any) -> int:
    from stoker.launch.executors import JobState

    if status.state == JobState.SUCCEEDED:
        return 0
    if status.exit_code not in (None, 0):
        return int(status.exit_code)
    return 130 if status.state == JobState.CANCELLED else EXIT_FAILED


def _follow_task(store: Any, exp_id: str, name: str, *, wait: bool) -> int:
    """Print a task's logs; with ``wait``, until it ends; returns its exit code."""
    from stoker.launch.driver import driver_alive, executor_for, task_state
    from stoker.launch.follow import tail

    record = store.task(exp_id, name)
    st = task_state(store, exp_id, record, driver_alive(store, exp_id))
    while wait and st.handle is None and not st.status.state.is_terminal:
        time.sleep(0.25)
        st = task_state(store, exp_id, record, driver_alive(store, exp_id))
    if st.handle is None:
        _err(f"task {record.name} has no output: {st.status.state.value} ({st.status.detail})")
        return _exit_code(st.status) if st.status.state.is_terminal else 0
    ex = executor_for(record)
    files = ex.log_files(st.handle)
    streams = [sys.stdout.buffer, sys.stderr.buffer]
    sources = list(zip(files, streams))
    final: list[Any] = [st.status]

    def done() -> bool:
        final[0] = ex.status(st.handle)
        return final[0].state.is_terminal

    try:
        tail(sources, done=done if wait else None)
    except KeyboardInterrupt:
        if ex.outlives_launcher:
            _err(f"stopped following; {record.name} keeps running: stoker exp status {exp_id}")
            return 130
        raise
    if not wait:
        return 0
    status = final[0]
    if status.state.value != "SUCCEEDED":
        _err(f"task {record.name}: {status.state.value}"
             + (f" (exit code {status.exit_code})" if status.exit_code is not None else "")
             + (f": {status.detail}" if status.detail and status.detail != "cancelled" else ""))
    return _exit_code(status)


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ------------------------------------------------------------------------- commands
def list_cmd(limit: int = typer.Option(20, "--limit", "-n", help="How many to show.")) -> int:
    from stoker.launch.driver import experiment_states
    from stoker.launch.store import JobStore

    store = JobStore()
    exps = store.list(limit=limit)
    if not exps:
        typer.echo(f"no experiments in {store.root}")
        return 0
    rows = [("ID", "TITLE", "CREATED", "STATE", "TASKS")]
    for e in exps:
        states = experiment_states(store, e["id"])
        rows.append((e["id"], e.get("title", ""), _when(e.get("created")),
                     _overall([s.status.state.value for s in states]), _counts(states)))
    _print_rows(rows)
    return 0


def status_cmd(exp_id: str = typer.Argument(..., help="Experiment id (or a unique prefix, "
                                            "or 'latest').")) -> int:
    from stoker.launch.driver import experiment_states
    from stoker.launch.store import JobStore

    store = JobStore()
    exp_id = store.find(exp_id)
    states = experiment_states(store, exp_id)
    _print_status(store, exp_id, states)
    return EXIT_FAILED if any(s.status.state.value == "FAILED" for s in states) else 0


def _print_status(store: Any, exp_id: str, states: list[Any]) -> None:
    """The experiment's header and one row per task (a sweep: one per point, named by its
    overrides), then the run directories."""
    meta = store.experiment(exp_id)
    typer.echo(f"experiment {exp_id}  {meta.get('title', '')!r}  created "
               f"{_when(meta.get('created'))}  mode {meta.get('mode')}  "
               f"state {_overall([s.status.state.value for s in states])}")
    sweep = meta.get("sweep")
    if sweep:
        at_most = meta.get("max_parallel")
        typer.echo(f"sweep of {sweep.get('points')} points over {', '.join(sweep.get('keys') or [])}"
                   + (f", at most {at_most} at once" if at_most else ""))
    rows = [("TASK", "STATE", "EXIT", "EXECUTOR", "DETAIL")]
    for s in states:
        rows.append((s.record.name, s.status.state.value,
                     "-" if s.status.exit_code is None else str(s.status.exit_code),
                     str(s.record.executor.get("kind", "?")), s.status.detail))
    _print_rows(rows)
    for s in states:
        if s.record.run_dir:
            threads = f" ({s.record.threads} threads)" if s.record.threads else ""
            typer.echo(f"{s.record.name}: run directory {s.record.run_dir}{threads}")


def logs_cmd(exp_id: str = typer.Argument(..., help="Experiment id (or prefix, or 'latest')."),
             task: Optional[str] = typer.Argument(None, help="Task name (default: every task "
                                                  "in order)."),
             follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until "
                                         "the task ends; exit with its exit code.")) -> int:
    from stoker.launch.store import JobStore

    store = JobStore()
    exp_id = store.find(exp_id)
    names = [task] if task else [r.name for r in store.tasks(exp_id)]
    code = 0
    for name in names:
        if len(names) > 1:
            _err(f"==> {name} <==")
        code = _follow_task(store, exp_id, name, wait=follow) or code
    return code


def cancel_cmd(exp_id: str = typer.Argument(..., help="Experiment id (or prefix, or 'latest')."),
               task: Optional[str] = typer.Argument(None, help="Only this task (default: "
                                                    "all, and nothing more is submitted).")) -> int:
    from stoker.launch.driver import executor_for, experiment_states
    from stoker.launch.store import JobStore

    store = JobStore()
    exp_id = store.find(exp_id)
    records = [store.task(exp_id, task)] if task else store.tasks(exp_id)
    if not task:
        store.mark_cancelled(exp_id)
    for r in records:
        handle = store.handle(exp_id, r.folder)
        if handle is None:
            if store.skipped(exp_id, r.folder) is None:
                store.mark_skipped(exp_id, r.folder, "not submitted: cancelled")
            continue
        executor_for(r).cancel(handle)
    for s in experiment_states(store, exp_id):
        if s.record in records or s.record.name in {r.name for r in records}:
            typer.echo(f"{s.record.name}: {s.status.state.value}"
                       + (f" ({s.status.detail})" if s.status.detail else ""))
    return 0


def rerun_cmd(exp_id: str = typer.Argument(..., help="Experiment id (or prefix, or 'latest')."),
              detach: bool = typer.Option(False, "--detach", help="Do not follow; return at "
                                          "once."),
              name: Optional[str] = typer.Option(None, "--name", help="Label of the new "
                                                 "experiment (default: the old one's).")) -> int:
    from stoker.launch.experiment import rerun
    from stoker.launch.store import JobStore

    store = JobStore()
    exp_id = store.find(exp_id)
    old = store.experiment(exp_id)
    detach = detach or bool(old.get("detach"))
    new_id = rerun(store, exp_id, detach=detach, name=name)
    _err(f"rerun of {exp_id}")
    return _after_launch(store, new_id, detach)


# -------------------------------------------------------------------------- helpers
def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else "?"


def _overall(states: list[str]) -> str:
    for s in ("FAILED", "RUNNING", "PENDING", "UNKNOWN", "CANCELLED"):
        if s in states:
            return s
    return "SUCCEEDED" if states else "EMPTY"


def _counts(states: list[Any]) -> str:
    from collections import Counter

    c = Counter(s.status.state.value.lower() for s in states)
    return ", ".join(f"{n} {k}" for k, n in sorted(c.items()))


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
