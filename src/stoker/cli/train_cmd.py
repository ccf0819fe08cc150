"""Commands of `stoker` defined in this module (see stoker.cli.app.COMMAND_MODULES)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
