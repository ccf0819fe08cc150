"""The shared front door of config-driven commands: validate, then dry-run, export or confirm.

``stoker train``, ``stoker config`` and users' ``@stoker.entrypoint`` scripts all pass
through here, so ``--dryrun``, ``--to-yaml/--to-toml/--to-json`` and ``--yes`` behave the
same everywhere. Typer/Rich only; the config library is imported when called.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted rows of a nested mapping (lists of scalars stay one row)."""
    rows: list[tuple[str, Any]] = []
    if isinstance(data, dict) and data:
        for k, v in data.items():
            rows.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for i, v in enumerate(data):
            rows.extend(flatten(v, f"{prefix}[{i}]"))
    else:
        rows.append((prefix, data))
    return rows


def print_table(data: Any, title: str, *, console: Any = None) -> None:
    """The resolved config as a two-column Rich table (argument, value)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(soft_wrap=False)
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("Argument", style="cyan", no_wrap=True)
    table.add_column("Resolved value", overflow="fold")
    for key, value in flatten(data):
        table.add_row(key or "<root>", _show(value))
    console.print(table)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value else value
    return repr(value)


def export(cfg: Any, to_yaml: str | Path | None, to_toml: str | Path | None,
           to_json: str | Path | None) -> list[Path]:
    from stoker.config.export import save

    written = []
    for path in (to_yaml, to_toml, to_json):
        if path:
            written.append(save(cfg, path))
    return written


def run_front_door(cfg: Any, *, dryrun: bool = False, to_yaml: str | Path | None = None,
                   to_toml: str | Path | None = None, to_json: str | Path | None = None,
                   yes: bool = False, title: str = "config", schema: Any = None) -> bool:
    """Validate ``cfg`` (raising ConfigError with every problem), then:

    * ``--to-*``: write the config (re-loadable with ``-c``), say so, return False;
    * ``--dryrun``: print the resolved arguments as a table, return False;
    * otherwise ask "Run?" only when stdin is a TTY and ``yes`` is False; return True to go on.
    """
    from stoker.config.export import to_container
    from stoker.config.validation import validate

    validate(cfg, schema=schema)
    written = export(cfg, to_yaml, to_toml, to_json)
    if written:
        for p in written:
            sys.stdout.write(f"wrote {p}\n")
        sys.stdout.write("Export complete; not running.\n")
        return False
    if dryrun:
        print_table(to_container(cfg, resolve=True), f"Dry run: {title}")
        return False
    if not yes and sys.stdin is not None and sys.stdin.isatty():
        from rich.prompt import Confirm

        print_table(to_container(cfg, resolve=True), f"{title}")
        if not Confirm.ask("Run?", default=True):
            sys.stdout.write("Not running.\n")
            return False
    return True
