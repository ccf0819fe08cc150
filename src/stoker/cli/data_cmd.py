"""``stoker data prepare`` and ``stoker data train-tokenizer``.

Thin: parse flags, call :mod:`stoker.data`, show progress. Module level imports: typer only,
so ``stoker --help`` never pays for numpy or tokenizers.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``data`` sub-app to the root app."""
    data = typer.Typer(
        name="data",
        help="Prepare datasets (text/JSONL/Parquet -> token shards) and train tokenizers.",
        no_args_is_help=True,
    )
    data.command("prepare")(prepare_cmd)
    data.command("train-tokenizer")(train_tokenizer_cmd)
    app.add_typer(data, name="data")


# ----------------------------------------------------------------------------- progress


class _ProgressView:
    """A Rich bar (documents, tokens, MB/s) on a TTY; plain periodic lines otherwise."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._bar = None
        self._task = None
        self._phase = None
        self._last = 0.0
        self.already_prepared = False  # the last report said the output was already done

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False

    def __call__(self, p) -> None:
        import time

        self.already_prepared = bool(getattr(p, "already_prepared", False))
        if not self.enabled:
            return
        elapsed = max(1e-9, time.monotonic() - p.started)
        rate = (p.done_bytes - (0 if p.phase == "scan" else 0)) / elapsed / 1e6
        if self.tty:
            self._rich(p, rate)
            return
        now = time.monotonic()
        if p.phase != self._phase or now - self._last >= 2.0 or p.done_units == p.total_units:
            if p.phase == "scan" and self._phase == "scan" and p.done_bytes < p.total_bytes:
                return
            self._phase, self._last = p.phase, now
            if p.phase == "scan":
                if p.done_bytes >= p.total_bytes:
                    sys.stderr.write(f"{self.label}: scanned {p.total_bytes / 1e6:.1f} MB of input\n")
            elif p.phase == "tokenize":
                extra = f" ({p.resumed_units} resumed)" if p.resumed_units else ""
                sys.stderr.write(
                    f"{self.label}: shards {p.done_units}/{p.total_units}{extra}, "
                    f"{p.documents:,} docs, {p.tokens:,} tokens, {rate:.1f} MB/s\n")
            sys.stderr.flush()

    def _rich(self, p, rate) -> None:
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeRemainingColumn)

        if self._bar is None:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                console=_console(), transient=False,
            )
            self._bar.start()
        if p.phase != self._phase:
            self._phase = p.phase
            desc = {"scan": "scanning", "tokenize": "tokenizing", "done": "done"}.get(p.phase, p.phase)
            if self._task is not None:
                self._bar.update(self._task, visible=p.phase != "done" or True)
            if p.phase == "done":
                return
            self._task = self._bar.add_task(desc, total=max(1, p.total_bytes), info="")
        if p.phase == "scan":
            info = f"{p.done_bytes / 1e6:.1f}/{p.total_bytes / 1e6:.1f} MB"
        else:
            info = f"{p.documents:,} docs  {p.tokens:,} tok  {rate:.1f} MB/s"
        self._bar.update(self._task, completed=p.done_bytes, total=max(1, p.total_bytes), info=info)


def _console():
    from rich.console import Console

    return Console(stderr=True)


# ------------------------------------------------------------------------------ prepare


def prepare_cmd(
    input_path: Optional[List[str]] = typer.Option(
        None, "--input-path", "-i",
        help="Input file, glob or directory (text, .jsonl, .parquet, or a datasets save_to_disk "
             "directory). Repeat for several."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Directory to write the dataset to."),
    type: str = typer.Option("char", "--type", help="char (vocabulary from the corpus) or subword "
                                                    "(needs --tokenizer-path)."),
    tokenizer_path: Optional[Path] = typer.Option(
        None, "--tokenizer-path", help="tokenizer.json, SentencePiece .model, or a tokenizer directory."),
    split_ratios: str = typer.Option("0.9,0.05,0.05", "--split-ratios",
                                     help="train,valid,test fractions summing to 1."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j",
                                          help="Worker processes (default: all cores)."),
    blend: Optional[Path] = typer.Option(
        None, "--blend", help="JSON/YAML blend file listing sources with weights (output shares)."),
    text_field: str = typer.Option("text", "--text-field", help="Field holding the text in "
                                                                "JSONL/Parquet/datasets inputs."),
    skip_bad_lines: bool = typer.Option(False, "--skip-bad-lines",
                                        help="Skip malformed JSONL lines/rows and report a count."),
    dtype: str = typer.Option("auto", "--dtype", help="Token dtype: auto, uint16 or uint32."),
    shard_size_mb: float = typer.Option(4.0, "--shard-size-mb",
                                        help="Input MB per shard (the unit of work and of resume)."),
    no_eos: bool = typer.Option(False, "--no-eos", help="Do not append an end-of-document token."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace a different dataset already in --output-dir."),
    register_name: Optional[str] = typer.Option(
        None, "--register", help="Register the result as artifact NAME (art://NAME:vN)."),
    registry: Optional[str] = typer.Option(None, "--registry", help="Registry URL for --register."),
    no_fsync: bool = typer.Option(False, "--no-fsync",
                                  help="Skip the final fsync (faster on slow disks; a power cut "
                                       "may then lose the dataset, a crash or kill cannot)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Tokenize text into memory-mapped token shards with train/valid/test splits.

    Example: stoker data prepare --input-path data/raw/ --output-dir data/x --type char
    """
    from stoker.data.prepare import prepare
    from stoker.errors import DataError

    if register_name is not None:
        # a bad name fails before any work, so nothing is prepared or half-registered
        from stoker.artifacts.names import validate_name
        from stoker.artifacts.registry import resolve_registry

        validate_name(register_name)
        resolve_registry(registry)  # a registry path that is a file: refused before the work
    inputs: list = list(input_path or [])
    if blend is not None:
        from stoker.data.blend import read_blend_file

        inputs.extend(read_blend_file(blend, text_field=text_field))
    if not inputs:
        raise DataError("no input given; pass --input-path PATH (a file, glob or directory) or --blend FILE")
    with _ProgressView("prepare", enabled=not quiet) as view:
        out = prepare(
            inputs, output_dir, type=type, tokenizer_path=tokenizer_path, split_ratios=split_ratios,
            workers=workers, text_field=text_field, skip_bad_lines=skip_bad_lines, dtype=dtype,
            overwrite=overwrite, shard_size_mb=shard_size_mb, append_eos=not no_eos,
            command=["stoker", *sys.argv[1:]], progress=view, fsync=not no_fsync,
        )
    import json

    md = json.loads((out / "metadata.json").read_text())
    piped_json = register_name is not None and not sys.stdout.isatty()
    say = (lambda s: sys.stderr.write(s + "\n")) if piped_json else typer.echo
    counts = ", ".join(f"{k} {v['tokens']:,}" for k, v in md["splits"].items())
    verb = "already prepared" if view.already_prepared else "prepared"
    say(f"{verb} {out}: {md['total_tokens']:,} tokens ({counts}), vocab {md['vocab_size']} "
        f"({md['tokenizer']['type']}), {md['dtype']}")
    if md.get("bad_lines_skipped"):
        say(f"skipped {md['bad_lines_skipped']} bad line(s) (--skip-bad-lines)")
    if register_name is not None:
        from stoker.artifacts.publish_data import register_prepared_dataset
        from stoker.artifacts.types import print_step_complete

        art = register_prepared_dataset(out, register_name, registry=registry)
        if piped_json:
            # the one pipe format (`Artifact.load()` with no path reads it from stdin)
            print_step_complete(art)
        else:
            uri = getattr(art, "uri", None) or f"art://{register_name}"
            typer.echo(f"registered {uri}")


# ---------------------------------------------------------------------- train-tokenizer


def train_tokenizer_cmd(
    input_path: List[str] = typer.Option(..., "--input-path", "-i",
                                         help="Input file, glob or directory. Repeat for several."),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Directory for the tokenizer files."),
    type: str = typer.Option("bpe", "--type", help="bpe, unigram or char."),
    vocab_size: int = typer.Option(8192, "--vocab-size", help="Target vocabulary size (bpe/unigram)."),
    library: str = typer.Option("hf", "--library",
                                help="hf (tokenizer.json) or sentencepiece (tokenizer.model)."),
    text_field: str = typer.Option("text", "--text-field", help="Text field for JSONL/Parquet inputs."),
    skip_bad_lines: bool = typer.Option(False, "--skip-bad-lines", help="Skip malformed JSONL lines."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing tokenizer."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a tokenizer (HF tokenizers BPE/unigram, SentencePiece, or char) on text files.

    Example: stoker data train-tokenizer --input-path corpus/ --output-dir tok --type bpe --vocab-size 8192
    """
    from stoker.data.tokenizer_training import train_tokenizer_to_dir

    tty = sys.stderr.isatty() and not quiet
    tok = train_tokenizer_to_dir(
        input_path, output_dir, type=type, vocab_size=vocab_size, library=library,
        text_field=text_field, skip_bad_lines=skip_bad_lines, overwrite=overwrite,
        progress=tty, log=None if (quiet or tty) else (lambda s: sys.stderr.write(s + "\n")),
    )
    typer.echo(f"trained {type} tokenizer ({tok.kind}, vocab {tok.vocab_size}) -> {output_dir}")
