"""``stoker export hf`` and ``stoker import hf``: to and from Hugging Face directories.

Only typer is imported at module level; transformers loads inside the commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    exp = typer.Typer(help="Export a trained model to another ecosystem.", no_args_is_help=True)
    exp.command("hf", help="Write a directory transformers' AutoModelForCausalLM and "
                "AutoTokenizer load without stoker (GPT -> Llama).")(export_hf_cmd)
    app.add_typer(exp, name="export")
    imp = typer.Typer(help="Import a model from another ecosystem.", no_args_is_help=True)
    imp.command("hf", help="Convert a local Hugging Face Llama directory into a .stoker "
                "archive.")(import_hf_cmd)
    app.add_typer(imp, name="import")


def export_hf_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="A .stoker archive, run "
                                   "directory, checkpoint step directory or art://NAME."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing directory."),
    trust: Optional[list[str]] = typer.Option(None, "--trust", help="Allow an archive's "
                                              "config to name code in this module."),
) -> int:
    from stoker.package.hf_export import export_hf

    out = export_hf(checkpoint, output, trust=tuple(trust or ()), force=force)
    typer.echo(f"wrote {out}")
    typer.echo("load it:  transformers.AutoModelForCausalLM.from_pretrained("
               f"{str(out)!r}); AutoTokenizer.from_pretrained({str(out)!r})")
    return 0


def import_hf_cmd(
    directory: Path = typer.Argument(..., help="Local Hugging Face model directory "
                                     "(config.json, *.safetensors, tokenizer.json)."),
    output: Path = typer.Option(..., "--output", "-o", help="Archive to write."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> int:
    from stoker.package.hf_import import import_hf

    out = import_hf(directory, output, force=force)
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    typer.echo(f"use it:  stoker generate text --checkpoint {out} --prompt 'Hello'")
    return 0
