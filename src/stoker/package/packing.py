"""``stoker pack``: a trained model, as one file someone else can restore.

What goes in (see :mod:`stoker.package.archive` for the layout): the model config with its
vocabulary size filled in, the weights (tied tensors stored once), the tokenizer's own
files, the pieces ``stoker eval`` needs (data section, losses, metrics), and the lineage:
which checkpoint and step, its metrics, the run and its command, and the data artifact or
directory it trained on (with its fingerprint). Files the config refers to by path are
copied in under ``files/`` and their paths rewritten to ``archive:files/...`` (NeMo's
``register_artifact``), so the archive does not depend on the packing machine; the working
directory is never changed.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from stoker.errors import ArchiveError
from stoker.package.archive import FORMAT, ArchiveWriter

__all__ = ["ARCHIVE_REF", "pack", "write_archive"]

ARCHIVE_REF = "archive:"
_EVAL_KEYS = ("data", "model_inputs", "model_outputs", "losses", "metrics")


def _dedupe(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Tensors sharing storage (tied embeddings) stored once; the aliases are recorded."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out: dict[str, Any] = {}
    tied: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().contiguous().cpu()
    return out, tied


def _file_refs(tree: Any, add: Any, path: str = "") -> Any:
    """Copy of ``tree`` with each string naming an existing file replaced by ``add(path, file)``."""
    if isinstance(tree, dict):
        return {k: _file_refs(v, add, f"{path}.{k}" if path else str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_file_refs(v, add, f"{path}[{i}]") for i, v in enumerate(tree)]
    if isinstance(tree, str) and ("/" in tree or tree.startswith("~")) and "://" not in tree:
        p = Path(tree).expanduser()
        if p.is_file():
            return add(path, p)
    return tree


def write_archive(
    output: str | os.PathLike[str],
    *,
    model_config: dict[str, Any],
    state_dict: dict[str, Any],
    tokenizer: Any | None,
    lineage: dict[str, Any],
    eval_section: dict[str, Any] | None = None,
    imports: list[str] | None = None,
) -> Path:
    """Write a ``.stoker`` archive atomically (nothing appears at ``output`` on failure)."""
    from stoker import __version__
    from stoker.train.checkpoint.tensors import safetensors_parts

    from stoker.atomic import remove_stale_temps

    out = Path(output)
    if out.is_dir():
        raise ArchiveError(f"--output {out} is a directory; give a file name like model.stoker")
    # a pack killed mid-write (kill -9, SIGTERM) left its temp file here: it is this
    # archive's, and no one else will ever remove it (a live pack's temp is locked, kept)
    remove_stale_temps(out)
    weights, tied = _dedupe(state_dict)
    files: list[tuple[str, Path]] = []

    def register(key: str, p: Path) -> str:
        name = f"files/{len(files)}/{p.name}"
        files.append((name, p))
        return ARCHIVE_REF + name

    config = {
        "format": FORMAT,
        "model": _file_refs(model_config, register, "model"),
        "weights": "weights.safetensors",
        "tied": tied,
        "tokenizer": "tokenizer" if tokenizer is not None else None,
        "eval": _file_refs(eval_section, register, "eval") if eval_section else None,
        # the modules that define your own model (its run's `imports:`): restoring loads
        # them, once they are trusted (`--trust`)
        "imports": list(imports or []),
    }
    with ArchiveWriter(out) as w:
        w.add_json("config.json", config)
        # streamed from each tensor's memory (no serialized copy), hashed as it goes out
        w.add_parts("weights.safetensors", *safetensors_parts(weights))
        if tokenizer is not None:
            with tempfile.TemporaryDirectory(prefix="stoker-pack-") as tmp:
                tokenizer.save(tmp)
                w.add_tree("tokenizer", tmp)
        for name, p in files:
            w.add_file(name, p)
        w.add_json("lineage.json", lineage)
        return w.close({"stoker": __version__,
                        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(
                            timespec="seconds")})


def _read_json(p: Path) -> dict[str, Any]:
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_text(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _data_lineage(data_path: str | None) -> dict[str, Any]:
    """The dataset a run trained on: its path, published artifact and fingerprint."""
    if not data_path:
        return {}
    out: dict[str, Any] = {"path": data_path}
    p = Path(data_path)
    for fname, key in ((".stoker-artifact.json", "artifact"), ("metadata.json", "metadata")):
        try:
            obj = json.loads((p / fname).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if key == "artifact" and isinstance(obj, dict):
            out["artifact"] = obj.get("uri")
        elif isinstance(obj, dict):
            out.update({k: obj[k] for k in ("fingerprint", "vocab_size", "total_tokens")
                        if k in obj})
    return out


def pack(source: str, output: str | os.PathLike[str], *, registry: Any = None,
         trust: tuple[str, ...] | list[str] = ()) -> Path:
    """Pack a run directory, a checkpoint step directory or an ``art://`` model.

    An ``art://`` checkpoint came from a registry: its config passes the trust rule
    (allowlist plus ``trust``) before its model is built, as for ``eval``."""
    from stoker.package.source import checkpoint_dir, model_section
    from stoker.train.checkpoint import read_marker
    from stoker.train.init_from import INIT_FROM_FILE
    from stoker.train.loading import load_trained

    trained = load_trained(str(checkpoint_dir(source)),
                           trust=tuple(trust) if source.startswith("art://") else None)
    ckpt = Path(trained.checkpoint)
    marker = read_marker(ckpt) or {}
    config = trained.config
    run_dir = ckpt.parent.parent
    env: dict[str, Any] = {}
    try:
        env = json.loads((run_dir / "env.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    lineage = {
        "source": {"spec": source, "checkpoint": str(ckpt), "step": marker.get("step"),
                   "metrics": marker.get("metrics") or {}},
        "run": {"dir": str(run_dir), "name": config.get("name"),
                "command": _read_text(run_dir / "command.txt"),
                "git": env.get("git") if isinstance(env, dict) else None,
                "code": env.get("code") if isinstance(env, dict) else None,
                "stoker": env.get("stoker") if isinstance(env, dict) else None},
        "data": _data_lineage(data.get("path")),
        "recipe": config,
    }
    init = _read_json(run_dir / INIT_FROM_FILE)
    if init:
        lineage["init_from"] = init  # the pretrained weights this model was fine-tuned from
    if source.startswith("art://"):
        from stoker.artifacts.registry import resolve_registry

        lineage["source"]["artifact"] = resolve_registry(registry).resolve(source).uri
    eval_section = {k: config[k] for k in _EVAL_KEYS if k in config}
    imports = config.get("imports") or []
    return write_archive(output, model_config=model_section(trained),
                         state_dict=trained.model.state_dict(), tokenizer=trained.tokenizer,
                         lineage=lineage, eval_section=eval_section,
                         imports=[imports] if isinstance(imports, str) else list(imports))
