"""``stoker pack``: one ``.stoker`` file from a run, a checkpoint or an ``art://`` model.

Only typer is imported at module level; the packing code loads inside the command.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """SIGTERM during the write ends like Ctrl-C: the archive's temp file is removed
    (without this the process died with it on disk) and the exit code is 143."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        from stoker.errors import Interrupted

        exc = Interrupted("SIGTERM received: the archive was not written")
        exc.exit_code = 128 + signum
        raise exc

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


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

    with _terminate_cleanly():
        path = pack(checkpoint, output, trust=tuple(trust or ()))
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if publish:
        from stoker.package.publish import publish_archive

        art = publish_archive(path, publish)
        typer.echo(f"published {art.uri}" if getattr(art, "uri", None) else
                   f"published {publish}")
    typer.echo(f"use it:  stoker generate text --checkpoint {path} --prompt 'def '")
    return 0
