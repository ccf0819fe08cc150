"""``stoker import hf``: a local Llama-architecture directory as a ``.stoker`` archive.

Nothing from the directory is executed: ``config.json`` is read as JSON and its
architecture checked first (no ``trust_remote_code``), weights are read from safetensors
files only (``pytorch_model.bin`` is a pickle and is refused), and the tokenizer from its
``tokenizer.json`` (or SentencePiece ``tokenizer.model``). The weights are mapped by
:mod:`stoker.models.hf`, so the archive's GPT computes the same logits as the HF model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from stoker.errors import UserError

__all__ = ["SUPPORTED", "import_hf", "read_hf"]

SUPPORTED = {"llama": "LlamaForCausalLM"}


def _read_config(d: Path) -> dict[str, Any]:
    p = d / "config.json"
    if not d.is_dir():
        raise UserError(f"{d} is not a directory; give a local Hugging Face model directory "
                        "(with config.json and *.safetensors)")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{d} has no config.json; it is not a Hugging Face model directory") \
            from None
    except ValueError as e:
        raise UserError(f"{p} is not valid JSON ({e})") from None
    mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
    if mtype not in SUPPORTED:
        archs = ", ".join(cfg.get("architectures") or []) if isinstance(cfg, dict) else ""
        supported = ", ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
        raise UserError(f"{d} holds a {mtype!r} model{f' ({archs})' if archs else ''}; "
                        f"`stoker import hf` supports: {supported}")
    return cfg


def _weight_files(d: Path) -> list[Path]:
    index = d / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [d / n for n in names]
    files = sorted(d.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
    raise UserError(f"{d} has no *.safetensors weights"
                    + (f" (only {', '.join(pickles)}, a pickle format stoker does not load; "
                       "convert with transformers: model.save_pretrained(dir, "
                       "safe_serialization=True))" if pickles else ""))


def _tokenizer(d: Path) -> Any | None:
    from stoker.data.tokenizers import HFTokenizer, SentencePieceTokenizer

    eos = None
    try:
        tc = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        e = tc.get("eos_token")
        eos = e.get("content") if isinstance(e, dict) else e
    except (OSError, ValueError, AttributeError):
        pass
    if (d / "tokenizer.json").is_file():
        return HFTokenizer.from_file(d / "tokenizer.json", eos_token=eos)
    if (d / "tokenizer.model").is_file():
        return SentencePieceTokenizer.from_file(d / "tokenizer.model")
    return None


def read_hf(directory: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A local Llama directory in memory: (GPTConfig, stoker state dict, lineage record).

    The tied output weight, when tied, is the embedding tensor itself (stored once by pack,
    loaded by ``init_from`` into both names).
    """
    from safetensors.torch import load_file

    from stoker.models.hf import _transformers, hf_state_to_gpt, llama_config_to_gpt

    d = Path(directory).expanduser()
    raw = _read_config(d)
    hf_cfg = _transformers().LlamaConfig.from_dict(raw)
    cfg = llama_config_to_gpt(hf_cfg)
    files = _weight_files(d)
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(f))
    if "lm_head.weight" not in state and not cfg.tie_weights:
        raise UserError(f"{d}: lm_head.weight is missing and tie_word_embeddings is false")
    try:
        sd = hf_state_to_gpt(state, cfg)
    except KeyError as e:
        raise UserError(f"{d}: weight {e.args[0]!r} is missing; is this a complete "
                        "LlamaForCausalLM checkpoint?") from None
    if cfg.tie_weights:
        sd["lm_head.weight"] = sd["tok_emb.weight"]  # stored once, tied on restore
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(d.iterdir()) if p.is_file() and p.stat().st_size < (1 << 34)}
    lineage = {"hf_dir": str(d.resolve()), "model_type": raw.get("model_type"),
               "architectures": raw.get("architectures"), "files": digests}
    return cfg, sd, lineage


def import_hf(directory: str | os.PathLike[str], output: str | os.PathLike[str], *,
              force: bool = False) -> Path:
    """Convert a local Llama directory into an archive at ``output``."""
    from stoker.package.packing import write_archive

    d = Path(directory).expanduser()
    out = Path(output)
    if out.exists() and not force:
        raise UserError(f"--output {out} exists; choose another name or pass --force")
    cfg, sd, source = read_hf(d)
    return write_archive(out, model_config=cfg.model_dump(mode="json"), state_dict=sd,
                         tokenizer=_tokenizer(d), lineage={"source": source})
