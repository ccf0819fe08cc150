"""Publishing what the data and trainer areas produce, with lineage.

- :func:`register_prepared_dataset`: a ``stoker data prepare`` output directory becomes a
  :class:`PretrainBlendsArtifact` (token counts per split, sources with size and SHA-256,
  tokenizer), published as ``art://NAME:vN``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stoker.artifacts.types import InputDatasetInfo, PretrainBlendsArtifact
from stoker.errors import ArtifactError


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
