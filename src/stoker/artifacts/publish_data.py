"""Publishing what the data and trainer areas produce, with lineage.

- :func:`register_prepared_dataset`: a ``stoker data prepare`` output directory becomes a
  :class:`PretrainBlendsArtifact` (token counts per split, sources with size and SHA-256,
  tokenizer), published as ``art://NAME:vN``.
- :func:`register_trained_model`: a run directory's checkpoint becomes a
  :class:`ModelArtifact` whose producer records the data artifact it trained on.

A published model directory holds ``checkpoint/`` (the checkpoint step directory as the
trainer wrote it), ``config.yaml`` and ``env.json`` of the run.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from stoker.artifacts.types import InputDatasetInfo, ModelArtifact, PretrainBlendsArtifact
from stoker.errors import ArtifactError, RegistryError


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} not found: {what}") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def register_prepared_dataset(output_dir: str | Path, name: str, registry: Any = None, *,
                              mode: str = "copy", aliases: tuple[str, ...] = ()) -> PretrainBlendsArtifact:
    """Publish a prepared dataset directory (its ``metadata.json``) as a new version."""
    from stoker.artifacts.names import tokenizer_to_uri
    from stoker.artifacts.provenance import tracking_info

    out = Path(output_dir).resolve()
    meta = _read_json(out / "metadata.json",
                      "not a finished prepared dataset (run `stoker data prepare` first)")
    splits = meta.get("splits") or {}
    sources = []
    for s in meta.get("sources") or []:
        src = str(s.get("path") or s.get("uri") or "")
        sources.append(InputDatasetInfo(
            uri=src if "://" in src else Path(src).resolve().as_uri() if src else "unknown",
            name=s.get("name") or (Path(src).name if src else None),
            weight=s.get("weight"), num_rows=s.get("rows"), size_bytes=s.get("size"),
            sha256=s.get("sha256") or None,
        ))
    tok = meta.get("tokenizer") or {}
    tok_dir = out / (tok.get("path") or "tokenizer") if isinstance(tok, dict) else out / "tokenizer"
    paths = {f"{k}_path": out / k for k in ("train", "valid", "test") if (out / k).exists()}
    art = PretrainBlendsArtifact(
        path=out,
        total_tokens=meta.get("total_tokens"),
        total_sequences=meta.get("documents"),
        source_datasets=sources,
        tokenizer_uri=tokenizer_to_uri(tok_dir) if tok_dir.exists() else None,
        split_tokens={k: int(v.get("tokens", 0)) for k, v in splits.items() if isinstance(v, dict)},
        metadata={k: meta[k] for k in ("format", "dtype", "vocab_size", "eos_id", "tokenizer",
                                       "fingerprint", "input_bytes") if k in meta},
        producer=tracking_info(command=meta.get("command")),
        **paths,
    )
    return art.save(name, registry=registry, mode=mode, aliases=aliases)


BUILTIN_NAMES = {"char": "stoker-corpus-char", "bpe": "stoker-corpus-bpe"}


def register_builtin_dataset(data_dir: str | Path, kind: str, registry: Any = None) -> PretrainBlendsArtifact:
    """Publish the built-in corpus dataset (``builtin:char``/``builtin:bpe``) once.

    Why: a model trained on the built-in corpus should show ``model <- data <- python-stdlib``
    in its lineage like any other. The data stays where it is (``reference`` mode, under
    ``$STOKER_HOME/data``); a new version is made only when no version with the same content
    fingerprint exists, so every run on the same corpus points at the same ``art://`` URI.
    Its single source is the standard library directory (file count, bytes, checksum),
    not one entry per file.
    """
    from stoker.artifacts.registry import resolve_registry
    from stoker.artifacts.names import tokenizer_to_uri
    from stoker.artifacts.provenance import RunInfo, tracking_info

    if kind not in BUILTIN_NAMES:
        raise ArtifactError(f"unknown built-in dataset kind {kind!r}; use one of: "
                            f"{', '.join(BUILTIN_NAMES)}")
    name = BUILTIN_NAMES[kind]
    out = Path(data_dir).resolve()
    meta = _read_json(out / "metadata.json", "the built-in dataset is not prepared")
    corpus = meta.get("corpus") or {}
    fingerprint = str(meta.get("fingerprint") or corpus.get("sha256") or "")
    reg = resolve_registry(registry)
    if fingerprint:
        try:
            candidates = [reg.resolve(f"{name}:latest")]
        except ArtifactError:
            candidates = []
        if candidates and (candidates[0].artifact.get("metadata") or {}).get("fingerprint") != fingerprint:
            candidates = list(reversed(reg.versions(name)))  # rare: corpus or settings changed
        for entry in candidates:
            if not entry.deleted and (entry.artifact.get("metadata") or {}).get("fingerprint") == fingerprint:
                return reg.load(entry.uri, PretrainBlendsArtifact)
    root = corpus.get("root")
    source = InputDatasetInfo(
        uri=Path(root).as_uri() if root else "python-stdlib",
        name=f"{corpus.get('name', 'python-stdlib')} (Python {corpus.get('python', '?')}, .py files)",
        num_rows=corpus.get("files"), size_bytes=corpus.get("bytes"), sha256=corpus.get("sha256"),
    )
    splits = meta.get("splits") or {}
    tok = meta.get("tokenizer") or {}
    tok_dir = out / (tok.get("path") or "tokenizer") if isinstance(tok, dict) else out / "tokenizer"
    producer = tracking_info(RunInfo(run_id=f"builtin-{kind}"),
                             command=meta.get("command"), recipe=f"builtin:{kind}")
    art = PretrainBlendsArtifact(
        path=out,
        total_tokens=meta.get("total_tokens"),
        total_sequences=meta.get("documents"),
        source_datasets=[source],
        tokenizer_uri=tokenizer_to_uri(tok_dir) if tok_dir.exists() else None,
        split_tokens={k: int(v.get("tokens", 0)) for k, v in splits.items() if isinstance(v, dict)},
        metadata={"fingerprint": fingerprint, "corpus": corpus,
                  **{k: meta[k] for k in ("format", "dtype", "vocab_size", "eos_id", "tokenizer")
                     if k in meta}},
        producer=producer,
        **{f"{k}_path": out / k for k in ("train", "valid", "test") if (out / k).exists()},
    )
    return art.save(name, registry=reg, mode="reference")


def _data_uri(data_path: str | Path | None, registry: Any) -> str | None:
    """The exact ``art://name:vN`` a run's data came from, when it can be known."""
    if data_path is None:
        return None
    text = str(data_path)
    if text.startswith("art://"):
        from stoker.artifacts.registry import resolve_registry

        return resolve_registry(registry).resolve(text).uri
    sidecar = Path(text) / ".stoker-artifact.json"
    if not sidecar.is_file():
        return None
    try:
        env = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    uri = env.get("uri") if isinstance(env, dict) else None
    if not uri:
        return None
    from stoker.artifacts.registry import resolve_registry

    try:  # published to another registry (or removed since): not an input we can link
        return resolve_registry(registry).resolve(uri).uri
    except (ArtifactError, RegistryError):
        return None


def _pick_checkpoint(run_dir: Path, step: int) -> Path | None:
    root = run_dir / "checkpoints"
    exact = root / f"step-{step:08d}"
    if exact.is_dir():
        return exact
    if not root.is_dir():
        return None
    steps = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    return steps[-1] if steps else None


def _link_tree(src: Path, dst: Path) -> None:
    for dirpath, _dirs, files in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            try:
                os.link(Path(dirpath) / f, dst / rel / f)
            except OSError:
                shutil.copy2(Path(dirpath) / f, dst / rel / f)


def register_trained_model(run_dir: str | Path, name: str, *, step: int, metrics: dict[str, float],
                           data_path: str | Path | None = None, registry: Any = None,
                           aliases: tuple[str, ...] = ()) -> ModelArtifact:
    """Publish the run's checkpoint at ``step`` (or its newest) with config and env."""
    import yaml

    from stoker.track.run import config_hash, current_run, tracking_info

    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise ArtifactError(f"Run directory {run} does not exist.")
    ckpt = _pick_checkpoint(run, step)
    cfg: dict[str, Any] = {}
    if (run / "config.yaml").is_file():
        loaded = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        cfg = loaded if isinstance(loaded, dict) else {}
    env = _read_json(run / "env.json", "") if (run / "env.json").is_file() else {}
    git = env.get("git") or {}
    used = list(current_run().used)
    data_uri = _data_uri(data_path, registry)
    if data_uri and data_uri not in used:
        used.insert(0, data_uri)
    command = (run / "command.txt").read_text(encoding="utf-8").strip() if (run / "command.txt").is_file() else None
    producer = tracking_info(
        run_id=run.name, recipe=cfg.get("name") or run.parent.name,
        config_hash=config_hash(cfg) if cfg else None, command=command,
        git_commit=git.get("commit"), git_dirty=git.get("dirty"),
    ).model_copy(update={"used_artifacts": used})
    model_cfg = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    stage = run / f".stoker-publish-{uuid.uuid4().hex[:8]}"
    try:
        stage.mkdir()
        if ckpt is not None:
            _link_tree(ckpt, stage / "checkpoint")
        for fn in ("config.yaml", "env.json"):
            if (run / fn).is_file():
                shutil.copy2(run / fn, stage / fn)
        loss = metrics.get("loss", metrics.get("val/loss", metrics.get("train/loss")))
        art = ModelArtifact(
            path=stage, step=step, loss=float(loss) if loss is not None else None,
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
            architecture=model_cfg.get("architecture") if model_cfg else None,
            metadata={"run_dir": str(run), "checkpoint": ckpt.name if ckpt else None},
            producer=producer,
        )
        saved = art.save(name, registry=registry, mode="copy", aliases=aliases)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return saved
