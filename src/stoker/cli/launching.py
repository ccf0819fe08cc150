"""Launching with ``executor=...``: ``stoker train ... executor=detached``, every
``@stoker.entrypoint`` script and ``stoker exp rerun`` pass through here.

:func:`split_launch` takes ``executor=...`` out of a command line; the default (local)
executor keeps today's in-process run; any other prints ``--dryrun`` output or submits the
job and follows it (or, detached, says how to). No typer here: a launch is a user's script
as often as the ``stoker`` command, and it should not pay for the command's framework
(``stoker exp`` in :mod:`stoker.cli.exp_cmd` prints status tables with it).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Sequence

EXIT_FAILED = 1


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
    from stoker.cli.exp_cmd import _print_status

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
        if st.status.state.value == "LOST":  # its submitter is gone: waiting would hang
            _err(f"task {record.name} will never start (LOST): {st.status.detail}")
        else:
            _err(f"task {record.name} has no output: {st.status.state.value} "
                 f"({st.status.detail})")
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
