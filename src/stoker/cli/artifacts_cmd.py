"""`stoker artifacts ...`: list, show, lineage, alias, verify, rm and gc in a registry.

Only typer is imported at module level; the registry code loads when a command runs.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from datetime import timedelta

artifacts_app = typer.Typer(
    name="artifacts", help="Versioned artifacts: list, show, lineage, alias, verify, rm, gc.",
    no_args_is_help=True, add_completion=False,
)

REGISTRY_OPT = typer.Option(
    None, "--registry", "-r", metavar="URL",
    help="Registry URL (dir, file://, memory://, s3://...). Default: stoker.init() or $STOKER_HOME/registry.",
)


def _registry(url: Optional[str]):
    from stoker.artifacts.registry import resolve_registry

    return resolve_registry(url)


def _console():
    from rich.console import Console

    return Console()


def _piped() -> bool:
    return not sys.stdout.isatty()


@artifacts_app.command("list")
def list_cmd(registry: Optional[str] = REGISTRY_OPT,
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List artifact names with their latest version and aliases."""
    reg = _registry(registry)
    entries = reg.list()
    if as_json:
        import json

        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    from rich.table import Table

    table = Table(title=f"Artifacts in {reg.url}")
    for col in ("name", "type", "latest", "versions", "aliases"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.name, e.type or "-", f"v{e.latest}" if e.latest else "-", str(e.versions),
                      ", ".join(f"{a}->v{v}" for a, v in sorted(e.aliases.items())))
    if not entries:
        typer.echo(f"No artifacts in {reg.url}.")
        return
    _console().print(table)


@artifacts_app.command("show")
def show_cmd(uri: str = typer.Argument(..., help="art://NAME[:vN|:ALIAS|:latest]"),
             registry: Optional[str] = REGISTRY_OPT) -> None:
    """Show one version. Piped, prints the JSON line that `Artifact.load()` reads."""
    from stoker.artifacts.types import Artifact, print_step_complete

    reg = _registry(registry)
    art = reg.load(uri, Artifact)
    if _piped():
        print_step_complete(art)
        return
    import json

    from rich.syntax import Syntax

    entry = reg.resolve(art.uri)
    con = _console()
    con.print(f"[bold]{art.uri}[/]  {art.type}  ({entry.mode}, {entry.files} files, {entry.bytes} bytes)")
    con.print(f"path: {art.path}")
    con.print(Syntax(json.dumps(art.to_record(), indent=2, default=str), "json", word_wrap=True))


@artifacts_app.command("lineage")
def lineage_cmd(uri: str = typer.Argument(..., help="art://NAME[:vN|:ALIAS|:latest]"),
                fmt: str = typer.Option("tree", "--format", "-f", help="tree | mermaid | dot | json"),
                registry: Optional[str] = REGISTRY_OPT) -> None:
    """Show what produced an artifact: upstream artifacts, runs, code and sources."""
    from stoker.artifacts import lineage_graph as lineage
    from stoker.errors import UserError

    renderers = {"mermaid": lineage.to_mermaid, "dot": lineage.to_dot, "json": lineage.to_json}
    if fmt not in (*renderers, "tree"):
        raise UserError(f"Unknown --format {fmt!r}; use tree, mermaid, dot or json.")
    reg = _registry(registry)
    reg.resolve(uri)  # an unknown artifact is an error (exit 2), not a one-node "?" tree
    node = lineage.build_lineage(reg, uri)
    if fmt == "tree":
        _console().print(lineage.to_rich_tree(node))
    else:
        sys.stdout.write(renderers[fmt](node))


@artifacts_app.command("alias")
def alias_cmd(uri: str = typer.Argument(..., help="art://NAME:vN (or another alias) to point at"),
              name: str = typer.Argument(..., help="alias to set or move, e.g. production"),
              remove: bool = typer.Option(False, "--remove", help="Remove the alias instead."),
              registry: Optional[str] = REGISTRY_OPT) -> None:
    """Set, move (or with --remove, remove) an alias. `latest` is automatic."""
    from stoker.artifacts.names import parse_ref

    reg = _registry(registry)
    if remove:
        reg.remove_alias(parse_ref(uri).name, name)
        typer.echo(f"removed alias {name!r} of {parse_ref(uri).name}")
        return
    entry = reg.set_alias(uri, name)
    typer.echo(f"art://{entry.name}:{name} -> {entry.uri}")


@artifacts_app.command("verify")
def verify_cmd(uri: str = typer.Argument(..., help="art://NAME[:vN|:ALIAS|:latest]"),
               registry: Optional[str] = REGISTRY_OPT) -> None:
    """Re-hash every file and compare with the manifest recorded at save (exit 1 on mismatch)."""
    report = _registry(registry).verify(uri)
    if not report.ok:
        typer.echo(f"error: {report.summary()}", err=True)
        raise typer.Exit(1)
    typer.echo(report.summary())


@artifacts_app.command("rm")
def rm_cmd(uri: str = typer.Argument(..., help="art://NAME:vN or art://NAME:ALIAS"),
           registry: Optional[str] = REGISTRY_OPT) -> None:
    """Remove one version (its number is never reused; `latest` moves back)."""
    from stoker.errors import UserError

    text = uri[len("art://"):] if uri.startswith("art://") else uri
    if ":" not in text or text.endswith(":latest"):
        raise UserError(f"Say which version to remove: art://NAME:vN (got {uri!r}).")
    entry = _registry(registry).delete(uri)
    typer.echo(f"removed {entry.uri}")


@artifacts_app.command("gc")
def gc_cmd(name: Optional[str] = typer.Argument(None, help="Only this artifact name (default: all)."),
           older_than: str = typer.Option(
               "24h", "--older-than", metavar="AGE",
               help="Keep objects younger than AGE (e.g. 30m, 24h, 7d; 0 removes all "
                    "unreferenced ones): a publish still copying has not claimed its version."),
           dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; remove nothing."),
           registry: Optional[str] = REGISTRY_OPT) -> None:
    """Remove data no version points at (left by publishers killed mid-copy)."""
    age = parse_age(older_than)
    removed = _registry(registry).collect_garbage(name, older_than=age, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for path in removed:
        typer.echo(f"{verb} {path}")
    typer.echo(f"{verb} {len(removed)} unreferenced object folder(s)")


def parse_age(text: str) -> "timedelta":
    """``30m``, ``24h``, ``7d``, ``90s`` or ``0`` -> a timedelta (UserError otherwise)."""
    import math
    from datetime import timedelta

    from stoker.errors import UserError

    text = text.strip()
    if text == "0":
        return timedelta(0)
    seconds_per = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = float(text[:-1]) * seconds_per[text[-1:].lower()]
    except (ValueError, KeyError):
        seconds = math.nan
    if not (math.isfinite(seconds) and 0 <= seconds <= 100 * 365 * 86400):
        raise UserError(f"--older-than {text!r} is not an age: write a number and a unit "
                        "(s, m, h or d) up to 100 years, e.g. --older-than 24h, or 0")
    return timedelta(seconds=seconds)


def register(app: typer.Typer) -> None:
    """Add the `artifacts` command group to the root app."""
    app.add_typer(artifacts_app, name="artifacts")
