"""``stoker generate text`` and ``stoker eval``: use a trained model, whatever form it has.

Both take ``--checkpoint`` as a ``.stoker`` archive, a run directory, a checkpoint step
directory or ``art://NAME[:VERSION]`` (:func:`stoker.package.open_model`). Only typer is
imported at module level; torch loads inside the commands.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

_MODEL_HELP = "A .stoker archive, a run directory, a checkpoint step directory or art://NAME."
_ALLOW_NONFINITE_HELP = ("Load weights that hold NaN/inf (debugging only; such checkpoints "
                        "are refused by default).")
_IMPORT_HELP = ("Import this module first (the code of your own model or dataset); "
                "repeatable. A run's own `imports:` are loaded anyway.")
_TRUST_HELP = ("Allow an archive's config to name code in this module (repeatable); "
               "without it only stoker's own code is allowed.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("eval", help="Evaluate a model (archive, checkpoint, run directory or "
                "art://) on a split of the data it was trained on.")(eval_cmd)
    gen = typer.Typer(help="Generate with a trained model.", no_args_is_help=True)
    gen.command("text", help="Sample text from a language model: one prompt, or a file of "
                "prompts batched together; streams to a terminal.")(generate_text)
    app.add_typer(gen, name="generate")


# ----------------------------------------------------------------------------- eval
def eval_cmd(
    path: str = typer.Argument(..., help=_MODEL_HELP),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: the "
                                        "recipe's eval split)."),
    batches: Optional[int] = typer.Option(None, "--batches", help="Limit the number of batches."),
    trust: Optional[list[str]] = typer.Option(None, "--trust", help=_TRUST_HELP),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help=_ALLOW_NONFINITE_HELP),
    imports: Optional[list[str]] = typer.Option(None, "--import", help=_IMPORT_HELP),
) -> int:
    from stoker.package.source import open_model
    from stoker.train.evaluate import evaluate_model

    restored = open_model(path, trust=tuple(trust or ()), allow_nonfinite=allow_nonfinite,
                          imports=tuple(imports or ()))
    metrics = evaluate_model(restored.model, restored.config.get("eval") or {}, split=split,
                             max_batches=batches)
    eval_cfg = restored.config.get("eval") or {}
    evaluated = split or (eval_cfg.get("data") or {}).get("eval_split") or "valid"
    typer.echo(f"checkpoint: {restored.source}")
    typer.echo(f"split: {evaluated}")
    for k, v in metrics.items():
        typer.echo(f"{k}: {v:.6g}")
    return 0


# ------------------------------------------------------------------------- generate
def read_prompts(path: Path) -> list[str]:
    """One prompt per line, or JSONL (``{"prompt": ...}`` or a JSON string per line)."""
    from stoker.errors import UserError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--prompts-file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--prompts-file {path} cannot be read as UTF-8 text: {e}") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    jsonl = path.suffix == ".jsonl" or (bool(lines) and lines[0][1].lstrip().startswith("{"))
    prompts = []
    for i, ln in lines:
        if not jsonl:
            prompts.append(ln)
            continue
        try:
            obj = json.loads(ln)
        except ValueError as e:
            raise UserError(f"{path}:{i}: not valid JSON ({e.msg}); JSONL prompt files hold "
                            "one {\"prompt\": \"...\"} object per line") from None
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            prompts.append(obj["prompt"])
        elif isinstance(obj, str):
            prompts.append(obj)
        else:
            raise UserError(f"{path}:{i}: expected {{\"prompt\": \"...\"}} or a JSON string")
    if not prompts:
        raise UserError(f"--prompts-file {path} holds no prompts")
    return prompts


def _check_sampling(temperature: float, top_p: Optional[float], top_k: Optional[int],
                    num_samples: int, max_new_tokens: int) -> None:
    """Refuse bad sampling settings before a model is loaded."""
    from stoker.errors import UserError

    if temperature < 0:
        raise UserError(f"--temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UserError(f"--top-p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k <= 0:
        raise UserError(f"--top-k must be a positive integer, got {top_k}")
    if num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {num_samples}")
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")


def generate_text(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", help=_MODEL_HELP),
    prompt: str = typer.Option("", "--prompt", "-p", help="Text to continue."),
    prompts_file: Optional[Path] = typer.Option(
        None, "--prompts-file", "-f", help="One prompt per line, or JSONL with a \"prompt\" "
        "field; all are generated in one batch."),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(0.8, "--temperature", "-t", help="0 means greedy."),
    top_k: Optional[int] = typer.Option(None, "--top-k"),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling, in (0, 1]."),
    seed: int = typer.Option(0, "--seed"),
    num_samples: int = typer.Option(1, "--num-samples", "-m", help="Samples per prompt."),
    stop: Optional[list[str]] = typer.Option(None, "--stop", help="End a sample where this "
                                             "text appears (repeatable; not printed)."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Print tokens "
                                          "as they come (default: when stdout is a terminal)."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Keep going past the "
                                    "end-of-text token (always max-new-tokens)."),
    output_format: str = typer.Option("auto", "--format", help="text, jsonl, or auto: jsonl "
                                      "for several samples when stdout is not a terminal."),
    trust: Optional[list[str]] = typer.Option(None, "--trust", help=_TRUST_HELP),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help=_ALLOW_NONFINITE_HELP),
    imports: Optional[list[str]] = typer.Option(None, "--import", help=_IMPORT_HELP),
) -> int:
    from stoker.errors import Interrupted, UserError

    _check_sampling(temperature, top_p, top_k, num_samples, max_new_tokens)
    if output_format not in ("auto", "text", "jsonl"):
        raise UserError(f"--format must be auto, text or jsonl, got {output_format!r}")
    if prompts_file is not None and prompt:
        raise UserError("give --prompt or --prompts-file, not both")
    prompts = read_prompts(prompts_file) if prompts_file is not None else [prompt]
    tty = sys.stdout.isatty()
    rows = len(prompts) * num_samples
    jsonl = output_format == "jsonl" or (output_format == "auto" and not tty and
                                         (prompts_file is not None or num_samples > 1))
    streaming = (tty if stream is None else stream) and rows == 1 and not jsonl

    from stoker.infer.text import TextStream
    from stoker.package.source import open_model

    restored = open_model(checkpoint, trust=tuple(trust or ()), allow_nonfinite=allow_nonfinite,
                          imports=tuple(imports or ()))
    from stoker.infer.generate import check_lm_contract

    tokenizer = restored.require_tokenizer()
    check_lm_contract(restored.model, vocab_size=getattr(tokenizer, "vocab_size", None))
    ts = TextStream(restored.model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                    temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                    num_samples=num_samples, stop=tuple(stop or ()),
                    stop_at_eos=not ignore_eos)
    out = sys.stdout
    try:
        if streaming:
            out.write(prompts[0])
            out.flush()
            for _, piece in ts:
                out.write(piece)
                out.flush()
            out.write("\n")
        else:
            for _ in ts:
                pass
            _print_all(ts.completions, jsonl, rows)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
        raise Interrupted("generation interrupted") from None
    return 0


def _print_all(completions: list[Any], jsonl: bool, rows: int) -> None:
    for c in completions:
        if jsonl:
            typer.echo(json.dumps(c.to_json(), ensure_ascii=False))
        elif rows == 1:
            typer.echo(c.prompt + c.text)
        else:
            typer.echo(f"--- prompt {c.prompt!r}, sample {c.sample + 1} ({c.finish}) ---")
            typer.echo(c.prompt + c.text)
