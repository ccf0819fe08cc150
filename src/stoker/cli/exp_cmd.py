"""``stoker exp list|status|logs|cancel|rerun``.

A damaged job store record is exit 2 naming its file and field (``stoker.launch.records``);
``list``, ``latest`` and ID prefixes skip such an experiment with a warning on stderr.

Launching with ``executor=...`` lives in :mod:`stoker.cli.launching` (no typer there).
Only typer is imported at module level; the launch library
loads inside the commands.
"""
from __future__ import annotations

import time
from typing import Any, Optional

import typer

from stoker.cli.launching import EXIT_FAILED, _after_launch, _err, _follow_task


def register(app: typer.Typer) -> None:
    exp = typer.Typer(help="Experiments launched with an executor (executor=detached, "
                      "torchrun, a profile...): list, status, logs, cancel, rerun.",
                      no_args_is_help=True)
    exp.command("list", help="Recent experiments, newest first.")(list_cmd)
    exp.command("status", help="Each task's state, exit code and run directory; exit 1 "
                "when a task failed or was lost (never submitted, its launcher gone: rerun "
                "it).")(status_cmd)
    exp.command("logs", help="A task's output (stdout, then stderr); --follow until it "
                "ends and exit with its code.")(logs_cmd)
    exp.command("cancel", help="Cancel an experiment's tasks (or one): SIGTERM lets the "
                "trainer save a checkpoint.")(cancel_cmd)
    exp.command("rerun", help="Launch an experiment's tasks again (same configs, commands "
                "and executors); a training resumes its run directory.")(rerun_cmd)
    app.add_typer(exp, name="exp")


# ------------------------------------------------------------------------- commands
def list_cmd(limit: int = typer.Option(20, "--limit", "-n", help="How many to show.")) -> int:
    from stoker.launch.driver import experiment_states
    from stoker.launch.store import JobStore

    from stoker.launch.records import RecordError

    store = JobStore()
    skipped: list[Any] = []
    exps = store.list(limit=limit, skipped=skipped)
    rows = [("ID", "TITLE", "CREATED", "STATE", "TASKS")]
    for e in exps:
        try:
            states = experiment_states(store, e["id"])
        except RecordError as err:  # one damaged experiment never hides the others
            skipped.append(err)
            continue
        rows.append((e["id"], e.get("title", ""), _when(e.get("created")),
                     _overall([s.status.state.value for s in states]), _counts(states)))
    _warn_skipped(skipped)
    if len(rows) == 1:
        typer.echo(f"no experiments in {store.root}")
        return 0
    _print_rows(rows)
    return 0


def status_cmd(exp_id: str = typer.Argument(..., help="Experiment id (or a unique prefix, "
                                            "or 'latest').")) -> int:
    from stoker.launch.driver import experiment_states
    from stoker.launch.store import JobStore

    store = JobStore()
    exp_id = _find(store, exp_id)
    states = experiment_states(store, exp_id)
    _print_status(store, exp_id, states)
    lost = [s.record.name for s in states if s.status.state.value == "LOST"]
    if lost:
        _err(f"{len(lost)} task{'s' if len(lost) > 1 else ''} will never start (LOST: "
             f"{', '.join(lost)}); run the experiment again: stoker exp rerun {exp_id}")
    return EXIT_FAILED if any(s.status.state.value in ("FAILED", "LOST") for s in states) else 0


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
    exp_id = _find(store, exp_id)
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
    exp_id = _find(store, exp_id)
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
    exp_id = _find(store, exp_id)
    old = store.experiment(exp_id)
    detach = detach or bool(old.get("detach"))
    new_id = rerun(store, exp_id, detach=detach, name=name)
    _err(f"rerun of {exp_id}")
    return _after_launch(store, new_id, detach)


# -------------------------------------------------------------------------- helpers
def _find(store: Any, ref: str) -> str:
    """``store.find(ref)``, warning about the experiments the lookup had to skip."""
    skipped: list[Any] = []
    try:
        return str(store.find(ref, skipped=skipped))
    finally:
        _warn_skipped(skipped)


def _warn_skipped(skipped: list[Any]) -> None:
    for err in skipped:
        _err("warning: skipped " + str(err).replace("\n", "\n  "))


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else "?"


def _overall(states: list[str]) -> str:
    for s in ("FAILED", "LOST", "RUNNING", "PENDING", "UNKNOWN", "CANCELLED"):
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
