"""``stoker verify RUN``: re-run recorded steps of a run and say whether they reproduce.

Thin: parse the options, call :func:`stoker.train.verify.verify_run`, print its report and
exit 0 (reproduces: exact, or within the tolerance on another machine), 1 (does not) or 2
(bad input: not a run directory, no checkpoints, a span with nothing recorded). Only typer
is imported at module level.
"""
from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add this module's command to the root app."""
    app.command("verify", help="Re-run K steps of a run from one of its checkpoints (or "
                "from step 0) in a scratch directory and compare the losses and weights "
                "with what it recorded: 'exact' on the same machine, else the largest "
                "deviation. Exit 1 when it does not reproduce. The run is only read.")(verify)


def verify(
    run: str = typer.Argument(..., help="A run directory (the output_dir of `stoker train`)."),
    from_step: Optional[int] = typer.Option(
        None, "--from-step", help="Start at this checkpoint's step (0: from scratch; "
        "default: the earliest checkpoint, or 0 when there is only one)."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Steps to re-run (default: up to the next recorded "
        "checkpoint, whose weights are then compared too)."),
    rtol: float = typer.Option(
        1e-4, "--rtol", help="Relative deviation accepted on another machine (on the same "
        "machine fingerprint only bit-identical results reproduce)."),
) -> int:
    from stoker.cli.front_door import enable_artifact_references
    from stoker.errors import UserError
    from stoker.package.init_weights import init_weights
    from stoker.train.verify import verify_run

    if not rtol >= 0:
        raise UserError(f"--rtol must be >= 0, got {rtol}")
    enable_artifact_references()
    report = verify_run(run, from_step=from_step, steps=steps, rtol=rtol,
                        init_weights=init_weights)
    for line in report.lines():
        typer.echo(line)
    return 0 if report.reproduces else 1
