"""``stoker export hf``: a directory ``transformers`` loads on its own, no stoker needed.

The GPT becomes ``LlamaForCausalLM`` (:mod:`stoker.models.hf` maps the weights), saved with
``save_pretrained`` as safetensors. The tokenizer becomes a ``PreTrainedTokenizerFast``
over stoker's ``tokenizer.json`` (a BPE tokenizer's own file; a char tokenizer's
WordLevel file), so ``AutoTokenizer.from_pretrained(DIR)`` gives the same ids. The
directory appears all at once: it is written beside the target and renamed at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from stoker.errors import UserError, write_failure

__all__ = ["export_hf", "hf_tokenizer"]


def hf_tokenizer(tokenizer: Any) -> Any:
    """A ``transformers.PreTrainedTokenizerFast`` encoding and decoding like ``tokenizer``."""
    from stoker.models.hf import _transformers

    tf = _transformers()
    kind = getattr(tokenizer, "kind", None)
    if kind not in ("char", "hf"):
        raise UserError(f"exporting a {kind!r} tokenizer to Hugging Face is not supported; "
                        "supported: char, hf (BPE and other tokenizer.json tokenizers)")
    with tempfile.TemporaryDirectory(prefix="stoker-tok-") as tmp:
        tokenizer.save(tmp)
        specials: dict[str, Any] = {}
        eos_id = getattr(tokenizer, "eos_id", None)
        if kind == "char":
            specials = {"eos_token": "<eos>", "unk_token": "<unk>"}
        elif eos_id is not None:
            specials = {"eos_token": getattr(tokenizer, "eos_token", None)}
        fast = tf.PreTrainedTokenizerFast(tokenizer_file=str(Path(tmp) / "tokenizer.json"),
                                          clean_up_tokenization_spaces=False,
                                          **{k: v for k, v in specials.items() if v})
    return fast


def export_hf(source: str, output: str | os.PathLike[str], *,
              trust: tuple[str, ...] | list[str] = (), force: bool = False) -> Path:
    """Write the model behind ``source`` (archive, run, step dir, art://) as an HF directory."""
    from stoker.models.hf import to_hf
    from stoker.package.source import open_model

    out = Path(output)
    if out.exists() and not force:
        raise UserError(f"--output {out} exists; choose another directory or pass --force")
    restored = open_model(source, trust=trust)
    arch = getattr(getattr(restored.model, "config", None), "architecture", None)
    if arch != "gpt":
        what = repr(arch) if arch else f"your own ({type(restored.model).__name__})"
        raise UserError(f"{source} is a {what} model; `stoker export hf` supports: gpt "
                        "(exported as LlamaForCausalLM)")
    hf_model = to_hf(restored.model)
    tok = hf_tokenizer(restored.tokenizer) if restored.tokenizer is not None else None
    eos = getattr(restored.tokenizer, "eos_id", None)
    if eos is not None:
        hf_model.config.eos_token_id = eos
        hf_model.generation_config.eos_token_id = eos
        hf_model.generation_config.pad_token_id = eos
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise write_failure(exc, f"the Hugging Face directory {out}") from exc
    try:
        hf_model.save_pretrained(stage, safe_serialization=True)
        if tok is not None:
            tok.save_pretrained(stage)
        (stage / "stoker_lineage.json").write_text(
            json.dumps({"exported_from": str(source), "lineage": restored.lineage},
                       indent=2, default=str), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        failure = _os_error(exc)
        if failure is not None:  # a full disk: a message and exit 1, not a traceback
            raise write_failure(failure, f"the Hugging Face directory {out}") from exc
        raise
    return out


def _os_error(exc: BaseException) -> OSError | None:
    """The file system error behind ``exc``, if it is one.

    safetensors reports a failed write as ``SafetensorError("Error while serializing: I/O
    error: No space left on device (os error 28)")``, an exception that is no ``OSError``;
    its errno is read back from the message so it reads like any other full disk."""
    import errno as _errno
    import re

    if isinstance(exc, OSError):
        return exc
    if type(exc).__name__ == "SafetensorError":
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
        return OSError(_errno.EIO, str(exc))
    return None
