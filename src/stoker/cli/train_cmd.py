"""``stoker train`` and ``stoker demo`` (``eval`` and ``generate``: :mod:`stoker.cli.generate_cmd`).

Thin commands: parse arguments, compose and validate the config, call the library
(:mod:`stoker.train`), print the outcome. Only typer is imported at module level so that
``stoker --help`` stays fast; torch and the config system load inside the commands.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

DEMO_DIR = "outputs/gpt-char-demo"
IMPORT_HELP = ("Import this module before the config is validated (your models, datasets, "
               "losses, callbacks); repeatable. Like the config's `imports:` list.")
IMPORT_OPTION = typer.Option(None, "--import", help=IMPORT_HELP)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command(
        "train",
        context_settings={"allow_extra_args": False, "ignore_unknown_options": True},
        help="Train a recipe (built-in name or config file) with key=value overrides. "
        "Re-running the same command resumes from the latest checkpoint. "
        "executor=detached|torchrun|slurm|docker|PROFILE (with executor.FIELD=VALUE) runs it "
        "elsewhere; follow it with `stoker exp`. -m runs a sweep (optim.lr=1e-3,3e-3 "
        "seed=range(1,3)) as one experiment with a task per point.",
    )(train)
    app.command("demo", help="Prepare the built-in corpus, train gpt-char for about two "
                "minutes, and print a sample.")(demo)


# ---------------------------------------------------------------------------- train
def train(
    source: str = typer.Argument(..., help="Recipe name (see `stoker recipes`) or config file."),
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Overrides such as trainer.max_steps=100 optim.lr=3e-4 output_dir=out."
    ),
    dryrun: bool = typer.Option(False, "--dryrun", help="Show the resolved config and stop."),
    to_yaml: Optional[str] = typer.Option(None, "--to-yaml", help="Write the config as YAML."),
    to_toml: Optional[str] = typer.Option(None, "--to-toml", help="Write the config as TOML."),
    to_json: Optional[str] = typer.Option(None, "--to-json", help="Write the config as JSON."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    detach: bool = typer.Option(False, "--detach", help="Run in the background "
                                "(executor=detached unless another executor is named)."),
    name: Optional[str] = typer.Option(None, "--name", help="Label of the launch in "
                                       "`stoker exp list` (with an executor)."),
    multirun: bool = typer.Option(False, "--multirun", "-m", help="Run a sweep: one task "
                                  "per point of the overrides with several values "
                                  "(a,b / range(...) / choice(...) / glob(...))."),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, help="With -m: at "
                                           "most N points at once (default 1 on this "
                                           "machine; they share its cores)."),
    repl: bool = typer.Option(False, "--repl", help="Open a Python session holding the "
                              "resolved config, the typed recipe, data, model and optimizer "
                              "instead of training."),
    imports: Optional[list[str]] = IMPORT_OPTION,
) -> int:
    from stoker.cli.launching import split_launch
    from stoker.cli.front_door import enable_artifact_references, run_front_door
    from stoker.errors import UserError
    from stoker.train.recipe import recipe_schema
    from stoker.train.recipe_config import recipe_problems

    enable_artifact_references()
    overrides, executor = split_launch(overrides or (), detach=detach, name=name,
                                       keep_local=multirun)
    if multirun:
        if repl or to_yaml or to_toml or to_json:
            raise UserError("--repl and --to-yaml/--to-toml/--to-json work on one config; "
                            "drop -m (or pick one point's values)")
        from stoker.cli.launching import launch_sweep

        return launch_sweep("train", source, list(overrides), executor, name=name,
                            detach=detach, dryrun=dryrun, yes=yes, parallel=parallel,
                            title=f"{Path(source).stem}-sweep", imports=imports or ())
    if parallel is not None:
        raise UserError("--parallel N sets how many points of a sweep run at once; add -m "
                        "and a sweep override (optim.lr=1e-3,3e-3)")
    cfg = compose_train_config(source, list(overrides or ()), imports or ())
    if repl:
        from stoker.cli.repl import train_repl

        run_front_door(cfg, yes=True, title=f"stoker train {source}", schema=recipe_schema(),
                       check=recipe_problems)
        return train_repl(cfg, f"stoker train {source}")
    if executor is not None:
        from stoker.cli.launching import launch_train

        return launch_train(cfg, source, executor, name=name, detach=detach, dryrun=dryrun,
                            to_yaml=to_yaml, to_toml=to_toml, to_json=to_json, yes=yes)
    go = run_front_door(cfg, dryrun=dryrun, to_yaml=to_yaml, to_toml=to_toml, to_json=to_json,
                        yes=yes, title=f"stoker train {source}", schema=recipe_schema(),
                        check=recipe_problems)
    if not go:
        return 0
    run_training(cfg, argv=["stoker", "train", source, *(overrides or [])])
    return 0


def compose_train_config(source: str, overrides: list[str], imports: Any = ()) -> Any:
    """A training config composed after loading the user's code (``--import`` modules are
    recorded in its ``imports:``)."""
    from stoker.train.recipe_config import compose_recipe

    return compose_recipe(source, overrides, imports=list(imports or ()))


def run_training(cfg: Any, *, argv: list[str], quiet: bool = False) -> Any:
    """Train a composed config with a progress display; print the outcome. Returns FitResult."""
    from stoker.cli.closed_console import guarded_console
    from stoker.cli.train_progress import ProgressCallback, console_logging
    from stoker.config import to_record
    from stoker.package.init_weights import init_weights
    from stoker.train.publish import PublishModel
    from stoker.train.recipe_config import typed_recipe
    from stoker.train.trainer import Trainer

    recipe = typed_recipe(cfg)
    resolved = to_record(cfg)  # what the run records: ${oc.env:...} values stay unresolved
    trainers: list[Any] = []

    def console_closed(stream: Any) -> None:  # `stoker train ... | head`: train on
        import logging

        run_dir = getattr(trainers[0], "run_dir", None) if trainers else None
        where = run_dir / "logs" / "train.log" if run_dir else "the run's logs/train.log"
        logging.getLogger("stoker.train").warning(
            "%s was closed (its reader went away); training goes on and its output "
            "continues in %s", stream.name, where)

    with guarded_console(console_closed):  # a closed pipe never costs the run
        progress = ProgressCallback(quiet=quiet)  # writes to the guarded stderr
        publish = PublishModel()  # the trained model goes to the registry at the end
        trainer = Trainer(recipe, config=resolved, argv=argv, callbacks=[publish, progress],
                          init_weights=init_weights)  # init_from: archives, hf:DIR too
        trainers.append(trainer)
        with console_logging(progress):
            try:
                result = trainer.fit()
                if result.status == "already_finished":  # trained, but was it published?
                    caught_up = publish.catch_up(trainer, result.checkpoint)
                    if caught_up:
                        result.message += (f"; its model had not reached the registry (the "
                                           f"publish failed), published now as {caught_up}")
            finally:
                progress.close()
        result.artifact = publish.uri
        if trainer.is_rank_zero:
            _report(result)
    return result


def _report(result: Any) -> None:
    from rich.console import Console

    out = Console(stderr=False, highlight=False, soft_wrap=True)
    out.print(result.message)
    if result.status in ("already_finished", "already_paused"):
        return
    shown = {k: v for k, v in result.metrics.items()
             if k in ("loss", "perplexity", "eval/loss", "eval/perplexity", "eval/accuracy")}
    if shown:
        out.print("metrics: " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    out.print(f"run directory: {result.run_dir}")
    if result.checkpoint:
        out.print(f"checkpoint:    {result.checkpoint}")
    out.print(f"metrics:       {result.run_dir / 'metrics.jsonl'}")
    if (result.run_dir / "tensorboard").exists():
        out.print(f"tensorboard:   tensorboard --logdir {result.run_dir / 'tensorboard'}")
    if result.artifact:
        out.print(f"artifact:      {result.artifact}")


# ----------------------------------------------------------------------------- demo
def demo(
    output_dir: str = typer.Option(DEMO_DIR, "--output-dir", help="Run directory of the demo."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Override the length."),
) -> int:
    from stoker.atomic import check_dir_path
    from stoker.data.corpus import ensure_default_dataset
    from stoker.train.loading import load_trained

    check_dir_path(output_dir, "--output-dir")  # before minutes of corpus preparation
    typer.echo("stoker demo: a small GPT learns to write Python, character by character.")
    typer.echo("1/3 preparing the built-in corpus (Python's standard library sources; "
               "cached after the first time)...")
    data = ensure_default_dataset(kind="char")
    typer.echo(f"    dataset: {data}")
    typer.echo("2/3 training gpt-char (about two minutes on 2 CPU cores)...")
    overrides = [f"output_dir={output_dir}"]
    if max_steps is not None:
        overrides.append(f"trainer.max_steps={max_steps}")
    from stoker.cli.front_door import enable_artifact_references

    enable_artifact_references()
    cfg = compose_train_config("gpt-char", overrides)
    result = run_training(cfg, argv=["stoker", "demo", *sys.argv[2:]])
    typer.echo("3/3 sampling from the trained model (prompt: 'def '):")
    trained = load_trained(str(result.run_dir))
    sample = trained.sample("def ", max_new_tokens=300, temperature=0.6, seed=0)
    typer.echo("-" * 60)
    typer.echo(sample)
    typer.echo("-" * 60)
    typer.echo(f"run directory:    {result.run_dir}")
    typer.echo(f"checkpoints:      {result.run_dir / 'checkpoints'}")
    typer.echo(f"tensorboard logs: tensorboard --logdir {result.run_dir / 'tensorboard'}")
    typer.echo(f"more text:        stoker generate text --checkpoint {result.run_dir} "
               "--prompt 'class ' --temperature 0.6")
    typer.echo(f"train longer:     stoker train gpt-char output_dir={result.run_dir} "
               f"trainer.max_steps={result.max_steps * 2} --yes")
    if result.artifact:
        typer.echo(f"model artifact:   {result.artifact}  (its lineage: stoker artifacts "
                   f"lineage {result.artifact})")
    return 0
