"""``stoker import hf``: a local Llama-architecture directory as a ``.stoker`` archive.

Nothing from the directory is executed: ``config.json`` is read as JSON and its
architecture checked first (no ``trust_remote_code``), weights are read from safetensors
files only (``pytorch_model.bin`` is a pickle and is refused), and the tokenizer from its
``tokenizer.json`` (or SentencePiece ``tokenizer.model``). The weights are mapped by
:mod:`stoker.models.hf`, so the archive's GPT computes the same logits as the HF model.

The directory is someone else's, so it is read as untrusted (:mod:`stoker.untrusted`):
every file it names (the weight files of ``model.safetensors.index.json`` included) must
stay inside it (no absolute path, no ``..`` out, no link out) and be a regular file (not
``/dev/zero``, not a FIFO); JSON files are read with a size limit and duplicate keys
refused; safetensors headers are checked whole (:func:`parse_safetensors`) before a tensor
is made; the config's dimensions are checked before anything is built, and the weights'
shapes against the model the config describes before an archive is written. Only the
files used are hashed for the lineage record, by streaming.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from stoker.errors import UserError
from stoker.untrusted import (
    MAX_JSON_BYTES,
    inside,
    open_regular,
    read_file,
    sha256_file,
    strict_json,
)

__all__ = ["SUPPORTED", "import_hf", "read_hf"]

SUPPORTED = {"llama": "LlamaForCausalLM"}


def _json_file(d: Path, name: str) -> Any:
    """A JSON file of the directory: inside it, regular, bounded, duplicate keys refused."""
    p = inside(d, name, f"{d}: {name}")
    return strict_json(read_file(p, MAX_JSON_BYTES, str(d / name)), str(d / name))


def _read_config(d: Path) -> dict[str, Any]:
    if not d.is_dir():
        raise UserError(f"{d} is not a directory; give a local Hugging Face model directory "
                        "(with config.json and *.safetensors)")
    if not (d / "config.json").exists() and not (d / "config.json").is_symlink():
        raise UserError(f"{d} has no config.json; it is not a Hugging Face model directory")
    cfg = _json_file(d, "config.json")
    mtype = cfg.get("model_type") if isinstance(cfg, dict) else None
    if not isinstance(mtype, str) or mtype not in SUPPORTED:
        arch = cfg.get("architectures") if isinstance(cfg, dict) else None
        archs = ", ".join(map(str, arch)) if isinstance(arch, list) else ""
        supported = ", ".join(f"{k} ({v})" for k, v in SUPPORTED.items())
        raise UserError(f"{d} holds a {mtype!r} model{f' ({archs})' if archs else ''}; "
                        f"`stoker import hf` supports: {supported}")
    return cfg


# the sizes a Llama config gives as positive integers (absent or null: transformers' default)
_DIMS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
         "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings")


# no real model has a size above this; larger ones overflow torch's size arithmetic
_MAX_DIM = 1 << 24


def _check_dims(raw: dict[str, Any], d: Path) -> None:
    """Every problem of the config's dimensions at once, before anything is built (a zero
    there would be a ZeroDivisionError inside transformers)."""
    where = d / "config.json"
    problems = []
    for key in _DIMS:
        v = raw.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            problems.append(f"{key} must be a positive integer, got {v!r}")
        elif v is not None and v > _MAX_DIM:
            problems.append(f"{key}={v} is larger than any model stoker builds (at most "
                            f"{_MAX_DIM})")
    if not problems and raw.get("hidden_size") and raw.get("num_attention_heads"):
        heads = raw["num_attention_heads"]
        kv = raw.get("num_key_value_heads") or heads
        hidden, head_dim = raw["hidden_size"], raw.get("head_dim")
        if head_dim is None and hidden % heads:
            problems.append(f"num_attention_heads={heads} does not divide "
                            f"hidden_size={hidden}")
        elif head_dim is not None and head_dim * heads != hidden:
            problems.append(f"num_attention_heads={heads} * head_dim={head_dim} != "
                            f"hidden_size={hidden} (stoker's GPT needs them equal)")
        if heads % kv:
            problems.append(f"num_key_value_heads={kv} does not divide "
                            f"num_attention_heads={heads}")
    if problems:
        raise UserError(f"{where}: not a valid Llama config:\n  " + "\n  ".join(problems))


def _weight_files(d: Path) -> list[tuple[str, Path]]:
    """(name as given, resolved path) of each weight file, each checked to stay inside."""
    index_name = "model.safetensors.index.json"
    if (d / index_name).exists() or (d / index_name).is_symlink():
        index = _json_file(d, index_name)
        where = d / index_name
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise UserError(f"{where}: expected a JSON object with a non-empty 'weight_map' "
                            "(tensor name -> file name); the index is invalid")
        out = []
        for n in sorted({v for v in wmap.values() if isinstance(v, str)}):
            if not n.endswith(".safetensors"):
                raise UserError(f"{where}: weight_map names {n!r}, not a .safetensors file")
            out.append((n, inside(d, n, f"{where}: weight_map")))
        bad = [k for k, v in wmap.items() if not isinstance(v, str)]
        if bad:
            raise UserError(f"{where}: weight_map[{bad[0]!r}] is not a file name")
        return out
    files = sorted(p.name for p in d.glob("*.safetensors"))
    if files:
        return [(n, inside(d, n, f"{d}: {n}")) for n in files]
    pickles = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
    raise UserError(f"{d} has no *.safetensors weights"
                    + (f" (only {', '.join(pickles)}, a pickle format stoker does not load; "
                       "convert with transformers: model.save_pretrained(dir, "
                       "safe_serialization=True))" if pickles else ""))


def _load_safetensors(path: Path, shown: str) -> dict[str, Any]:
    """One weight file's tensors, mapped (not copied), its header checked whole first."""
    from stoker.train.checkpoint.tensors import DamagedFile, parse_safetensors

    with open_regular(path, shown) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            buf: Any = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) if size else b""
        except (OSError, ValueError) as e:
            raise UserError(f"cannot map {shown} ({size} bytes) into memory: {e}") from None
    try:
        return parse_safetensors(path.parent, path.name, buf)
    except DamagedFile as e:
        raise UserError(f"{shown} is not a valid safetensors file: {e}") from None


def _present(d: Path, name: str) -> bool:
    return (d / name).exists() or (d / name).is_symlink()


def _tokenizer(d: Path) -> tuple[Any | None, list[str]]:
    """The directory's tokenizer (or None) and the files it was read from."""
    from stoker.data.tokenizers import HFTokenizer, SentencePieceTokenizer

    used: list[str] = []
    eos = None
    if _present(d, "tokenizer_config.json"):
        tc = _json_file(d, "tokenizer_config.json")
        used.append("tokenizer_config.json")
        e = tc.get("eos_token") if isinstance(tc, dict) else None
        eos = e.get("content") if isinstance(e, dict) else e
        if eos is not None and not isinstance(eos, str):
            raise UserError(f"{d / 'tokenizer_config.json'}: eos_token must be a string or "
                            f"an object with a 'content' string, got {eos!r}")
    if _present(d, "tokenizer.json"):
        p = inside(d, "tokenizer.json", f"{d}: tokenizer.json")
        return HFTokenizer.from_file(p, eos_token=eos), [*used, "tokenizer.json"]
    if _present(d, "tokenizer.model"):
        p = inside(d, "tokenizer.model", f"{d}: tokenizer.model")
        return SentencePieceTokenizer.from_file(p), [*used, "tokenizer.model"]
    return None, used


def _llama_config(raw: dict[str, Any], d: Path) -> Any:
    """``raw`` as a stoker GPTConfig (through transformers' LlamaConfig), every failure typed."""
    from pydantic import ValidationError

    from stoker.models.hf import _transformers, llama_config_to_gpt

    where = d / "config.json"
    # what transformers raises on a config dict of the wrong shape (found by the property
    # test: a list where it indexes, a None where it calls a method, a zero it divides by)
    invalid: tuple[type[BaseException], ...] = (TypeError, ValueError, LookupError,
                                                AttributeError, ArithmeticError)
    try:  # transformers' configs validate fields with huggingface_hub's strict dataclasses
        from huggingface_hub.errors import StrictDataclassError

        invalid += (StrictDataclassError,)
    except ImportError:
        pass
    transformers = _transformers()
    try:
        hf_cfg = transformers.LlamaConfig.from_dict(raw)
    except invalid as e:
        raise UserError(f"{where}: not a valid Llama config ({type(e).__name__}: {e})") \
            from None
    try:
        return llama_config_to_gpt(hf_cfg)
    except (ValidationError, *invalid) as e:
        raise UserError(f"{where}: cannot be converted to a stoker GPT: {e}") from None


def _check_shapes(state: dict[str, Any], cfg: Any, d: Path) -> None:
    """The converted weights against the model the config describes, before any archive."""
    import torch

    from stoker.models import build_model

    try:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    except RuntimeError as e:  # sizes torch cannot even describe
        raise UserError(f"{d / 'config.json'}: describes a model that cannot be built "
                        f"({e})") from None
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    shapes = [f"{k}: weights {tuple(state[k].shape)}, config {want[k]}"
              for k in sorted(set(want) & set(state)) if tuple(state[k].shape) != want[k]]
    if missing or unexpected or shapes:
        raise UserError(f"{d}: the weights do not fit the model config.json describes "
                        f"(missing: {missing[:5]}; unexpected: {unexpected[:5]}; "
                        f"shapes: {shapes[:5]})")


def read_hf(directory: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """A local Llama directory in memory: (GPTConfig, stoker state dict, lineage record).

    The tied output weight, when tied, is the embedding tensor itself (stored once by pack,
    loaded by ``init_from`` into both names).
    """
    from stoker.models.hf import hf_state_to_gpt

    d = Path(directory).expanduser()
    raw = _read_config(d)
    _check_dims(raw, d)
    cfg = _llama_config(raw, d)
    files = _weight_files(d)
    state: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, f in files:
        for k, t in _load_safetensors(f, str(d / name)).items():
            if k in state:
                raise UserError(f"{d}: tensor {k!r} is in both {origin[k]} and {name}")
            state[k], origin[k] = t, name
    if "lm_head.weight" not in state and not cfg.tie_weights:
        raise UserError(f"{d}: lm_head.weight is missing and tie_word_embeddings is false")
    emb = state.get("model.embed_tokens.weight")
    if emb is not None and (emb.dim() != 2 or emb.shape[0] != cfg.vocab_size):
        raise UserError(f"{d / 'config.json'}: vocab_size={cfg.vocab_size}, but "
                        f"model.embed_tokens.weight ({origin['model.embed_tokens.weight']}) "
                        f"has shape {tuple(emb.shape)}; they must agree (vocab_size rows)")
    try:
        sd = hf_state_to_gpt(state, cfg)
    except KeyError as e:
        raise UserError(f"{d}: weight {e.args[0]!r} is missing; is this a complete "
                        "LlamaForCausalLM checkpoint?") from None
    except RuntimeError as e:  # a reshape or cat of tensors of the wrong shapes
        raise UserError(f"{d}: the weights do not fit the model config.json describes "
                        f"({e})") from None
    if cfg.tie_weights:
        sd["lm_head.weight"] = sd["tok_emb.weight"]  # stored once, tied on restore
    _check_shapes(sd, cfg, d)
    used = ["config.json", *(["model.safetensors.index.json"]
                             if _present(d, "model.safetensors.index.json") else []),
            *(n for n, _ in files)]
    digests = {n: sha256_file(inside(d, n, f"{d}: {n}"), str(d / n)) for n in sorted(used)}
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
    tokenizer, used = _tokenizer(d)
    source["files"].update({n: sha256_file(inside(d, n, f"{d}: {n}"), str(d / n))
                            for n in used})
    source["files"] = dict(sorted(source["files"].items()))
    return write_archive(out, model_config=cfg.model_dump(mode="json"), state_dict=sd,
                         tokenizer=tokenizer, lineage={"source": source})
