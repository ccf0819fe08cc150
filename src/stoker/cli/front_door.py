"""The shared front door of config-driven commands: validate, then dry-run, export or confirm.

``stoker train``, ``stoker config`` and users' ``@stoker.entrypoint`` scripts all pass
through here, so ``--dryrun``, ``--to-yaml/--to-toml/--to-json`` and ``--yes`` behave the
same everywhere. Typer/Rich only; the config library is imported when called.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def enable_artifact_references() -> None:
    """Resolve ``${art:NAME,FIELD}`` in the configs this process composes against the
    process-default artifact registry.

    The config layer cannot import the artifacts layer, so the code that starts work from
    a config wires the two: every command-line front door (``stoker train``/``demo``,
    ``stoker config``, ``@stoker.entrypoint`` scripts, the kit's ``stoker.cli`` helper)
    calls this before composing, as ``stoker.init`` does for Python sessions.
    """
    from stoker.artifacts.resolver import install

    install()


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
    """The resolved config as a two-column Rich table (argument, value).

    Rich lays out and measures every cell on its own (about 0.1 ms a cell), which made a
    400-row table cost 45 ms of a 0.3 s dry-run budget. So each column is one multi-line
    cell: values longer than the value column are folded here first (Rich's own fold),
    and the argument column gets a blank line per continuation line, so rows stay aligned
    and the table looks the same. Cells are Text, never markup (``[red]`` stays a value).
    Values of secret-looking keys are shown as ``****`` (:mod:`stoker.config.secrets`).
    """
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from stoker.config.secrets import mask_tree

    console = console or Console(soft_wrap=False)
    rows = [(key or "<root>", _show(value).split("\n")) for key, value in flatten(mask_tree(data))]
    width = max(console.width, 24)
    key_w = max((cell_len(k) for k, _ in rows), default=0)
    value_w = max((cell_len(line) for _, lines in rows for line in lines), default=0)
    border = 7  # three rules and one space of padding each side of both columns
    # arguments are shown whole unless that leaves values less than a third of the width
    key_cap = min(key_w, width - border - min(value_w, max(16, width // 3)))
    value_cap = max(width - border - key_cap, 8)
    keys: list[str] = []
    values: list[str] = []
    for key, lines in rows:
        folded: list[str] = []
        for line in lines:
            if cell_len(line) <= value_cap:
                folded.append(line)
            else:
                folded.extend(part.plain for part in Text(line).wrap(console, value_cap, overflow="fold"))
        keys.append(key)
        keys.extend([""] * (len(folded) - 1))
        values.extend(folded or [""])
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("Argument", style="cyan", no_wrap=True, max_width=key_cap or None)
    table.add_column("Resolved value", no_wrap=True)
    table.add_row(Text("\n".join(keys)), Text("\n".join(values)))
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
                   yes: bool = False, title: str = "config", schema: Any = None,
                   check: Any = None) -> bool:
    """Validate ``cfg`` (raising ConfigError with every problem), then:

    * ``--to-*``: write the config (re-loadable with ``-c``), say so, return False;
    * ``--dryrun``: print the resolved arguments as a table, return False;
    * otherwise ask "Run?" only when stdin is a TTY and ``yes`` is False; return True to go on.

    ``check(cfg) -> (problems, resolved)`` replaces the plain schema check (``stoker
    train`` adds its checks of the model and data sections).
    """
    from stoker.config._gc import paused
    from stoker.config.validation import check_resolved
    from stoker.errors import ConfigError

    with paused():  # config work only: see stoker.config._gc
        # validation resolves every value once
        problems, resolved = check(cfg) if check is not None else check_resolved(cfg, schema)
        if problems:
            raise ConfigError(problems=problems)
        written = export(cfg, to_yaml, to_toml, to_json)
        if written:
            for p in written:
                sys.stdout.write(f"wrote {p}\n")
            sys.stdout.write("Export complete; not running.\n")
            return False
        if dryrun:
            print_table(resolved, f"Dry run: {title}")
            return False
    if not yes and sys.stdin is not None and sys.stdin.isatty():
        from rich.prompt import Confirm

        print_table(resolved, f"{title}")
        if not Confirm.ask("Run?", default=True):
            sys.stdout.write("Not running.\n")
            return False
    return True
