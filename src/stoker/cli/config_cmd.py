"""``stoker recipes``, ``stoker config show`` and ``stoker config validate``.

Module level imports typer only: the config library loads inside the commands.
"""
from __future__ import annotations

from typing import List, Optional

import typer

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
SOURCE_HELP = "A built-in recipe name, a YAML/TOML/JSON file, a .py file or module:function."
OVERRIDES_HELP = "Overrides: a.b=1, +new=1, ++a=1, ~a.b, key=@file.yaml[:section], group=option."


def _compose(source: str, overrides: list[str] | None, config: Optional[str] = None):
    from stoker.cli.front_door import enable_artifact_references
    from stoker.config.composing import compose

    enable_artifact_references()
    return compose(config or source, list(overrides or []))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

    @app.command("recipes")
    def recipes_cmd() -> None:
        """List the built-in recipes (name, description, command)."""
        from rich.console import Console
        from rich.table import Table

        from stoker.config.recipes import list_recipes

        table = Table(title="Recipes", title_justify="left")
        table.add_column("name", style="cyan", no_wrap=True)
        table.add_column("description")
        table.add_column("run with", style="green")
        for r in list_recipes():
            table.add_row(r.name, r.description, r.command or f"stoker train {r.name}")
        Console(soft_wrap=False).print(table)

    config_app = typer.Typer(help="Show and validate configs (recipes, files) with overrides.",
                             no_args_is_help=True)

    @config_app.command("show", context_settings=_EXTRA)
    def show(
        source: str = typer.Argument(..., help=SOURCE_HELP),
        overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
        fmt: str = typer.Option("yaml", "--format", "-f", help="yaml, toml, json or table."),
        raw: bool = typer.Option(False, "--raw", help="Keep ${...} interpolations unresolved."),
    ) -> None:
        """Print the composed config (interpolations resolved unless --raw)."""
        import sys

        from omegaconf import OmegaConf

        from stoker.config.export import dumps, to_container
        from stoker.config.validation import check

        cfg = _compose(source, overrides)
        if fmt == "table":
            from stoker.cli.front_door import print_table

            print_table(to_container(cfg, resolve=not raw), source)
            return
        if fmt not in ("yaml", "toml", "json"):
            raise typer.BadParameter(f"unknown format '{fmt}'; use yaml, toml, json or table")
        if raw:
            sys.stdout.write(dumps(cfg, fmt))
            return
        problems = [p for p in check(cfg) if "interpolation" in p.message]
        if problems:
            from stoker.errors import ConfigError

            raise ConfigError(problems=problems)
        resolved = OmegaConf.create(to_container(cfg, resolve=True))
        sys.stdout.write(dumps(resolved, fmt))

    @config_app.command("validate", context_settings=_EXTRA)
    def validate_cmd(
        source: str = typer.Argument(..., help=SOURCE_HELP),
        overrides: Optional[List[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    ) -> None:
        """Check the config without running anything (targets, argument names, types, ???)."""
        import sys

        from stoker.cli.front_door import flatten
        from stoker.config.export import to_container
        from stoker.config.validation import validate

        cfg = _compose(source, overrides)
        validate(cfg)
        data = to_container(cfg, resolve=True)
        rows = flatten(data)
        n_targets = sum(1 for k, _ in rows if k.endswith("_target_"))
        sys.stdout.write(f"OK: {source} is valid ({len(rows)} values, {n_targets} targets checked)\n")

    app.add_typer(config_app, name="config")
