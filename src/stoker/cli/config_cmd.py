"""``stoker recipes``, ``stoker config show`` and ``stoker config validate``.

Module level imports typer only: the config library loads inside the commands.
"""
from __future__ import annotations

from typing import List, Optional

import typer

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}
SOURCE_HELP = "A built-in recipe name, a YAML/TOML/JSON file, a .py file or module:function."
OVERRIDES_HELP = "Overrides: a.b=1, +new=1, ++a=1, ~a.b, key=@file.yaml[:section], group=option."


IMPORT_HELP = ("Import this module first (your models, datasets, ...); repeatable. Like the "
               "config's `imports:` list.")


def _compose(source: str, overrides: list[str] | None, imports: list[str] | None = None):
    """Compose the config after loading the user's code it names (``imports:``, --import)."""
    from stoker.cli.front_door import enable_artifact_references
    from stoker.config.composing import compose
    from stoker.config.plugins import load_user_code

    enable_artifact_references()
    cfg = compose(source, list(overrides or []))
    imported = cfg.get("imports") if hasattr(cfg, "get") else None
    if imported is not None and not isinstance(imported, (str, list)):
        from omegaconf import OmegaConf

        imported = OmegaConf.to_container(imported, resolve=True)
    load_user_code(imported, extra=list(imports or []))
    return cfg


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
        imports: Optional[List[str]] = typer.Option(None, "--import", help=IMPORT_HELP),
    ) -> None:
        """Print the composed config (interpolations resolved unless --raw)."""
        import sys

        from omegaconf import OmegaConf

        from stoker.config.export import dumps, to_container
        from stoker.config.validation import check

        cfg = _compose(source, overrides, imports)
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
        imports: Optional[List[str]] = typer.Option(None, "--import", help=IMPORT_HELP),
    ) -> None:
        """Check the config without running anything (targets, argument names, types, ???);
        a training recipe (model, data, trainer) is also checked against the recipe schema."""
        import sys

        from stoker.cli.front_door import flatten
        from stoker.config.export import to_container
        from stoker.config.validation import validate

        cfg = _compose(source, overrides, imports)
        if all(k in cfg for k in ("model", "data", "trainer")):  # a training recipe: its schema
            from stoker.errors import ConfigError
            from stoker.train.recipe_config import recipe_problems

            problems, _ = recipe_problems(cfg)
            if problems:
                raise ConfigError(problems=problems)
        else:
            validate(cfg)
        data = to_container(cfg, resolve=True)
        rows = flatten(data)
        n_targets = sum(1 for k, _ in rows if k.endswith("_target_"))
        sys.stdout.write(f"OK: {source} is valid ({len(rows)} values, {n_targets} targets checked)\n")

    app.add_typer(config_app, name="config")
