"""``stoker pack``: one ``.stoker`` file from a run, a checkpoint or an ``art://`` model.

Only typer is imported at module level; the packing code loads inside the command.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("pack", help="Write a trained model (config, safetensors weights, tokenizer, "
                "lineage, SHA-256 manifest) into one .stoker file.")(pack_cmd)


def pack_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="Run directory, checkpoint "
                                   "step directory or art://NAME[:VERSION]."),
    output: Path = typer.Option(..., "--output", "-o", help="Archive to write, e.g. "
                                "model.stoker."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
    publish: Optional[str] = typer.Option(None, "--publish", help="Also publish the archive "
                                          "as the next version of this model artifact."),
    trust: Optional[list[str]] = typer.Option(None, "--trust", help="Allow an art:// "
                                              "checkpoint's config to name code in this "
                                              "module (repeatable)."),
) -> int:
    from stoker.errors import ArchiveError

    if output.exists() and not force:
        raise ArchiveError(f"--output {output} exists; choose another name or pass --force")
    from stoker.package.packing import pack

    path = pack(checkpoint, output, trust=tuple(trust or ()))
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if publish:
        from stoker.package.publish import publish_archive

        art = publish_archive(path, publish)
        typer.echo(f"published {art.uri}" if getattr(art, "uri", None) else
                   f"published {publish}")
    typer.echo(f"use it:  stoker generate text --checkpoint {path} --prompt 'def '")
    return 0
