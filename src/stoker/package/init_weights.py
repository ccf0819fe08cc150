"""Where ``init_from`` weights come from, for every kind of model reference.

The trainer (``stoker.train``, a layer below this one) asks a provider ``spec ->
WeightSource``; ``stoker train`` hands it :func:`init_weights`, which reads:

- a ``.stoker`` archive: its weights member only (manifest checked, SHA-256 verified,
  safetensors; the config is never built, so no trust list is needed);
- ``art://NAME[:TAG]``: the archive an artifact holds, else its checkpoint;
- ``hf:DIR``: a local Llama directory, converted in memory (no archive written);
- a run or checkpoint step directory: the training layer's own reader.

Each source says what the run records about it (kind, resolved path, the exact
``art://name:vN``, the archive's manifest digest or the HF files' digests).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stoker.errors import ArchiveError, UserError
from stoker.package.archive import is_archive
from stoker.train.init_from import InitFromError, WeightSource, checkpoint_weights

__all__ = ["init_weights"]


def _archive(path: Path, spec: str, record: dict[str, Any]) -> WeightSource:
    from stoker.package.restoring import archive_state_dict

    state, _config, manifest = archive_state_dict(path)
    record.update(kind="archive", path=str(path.resolve()), manifest_sha256=manifest)
    return WeightSource(state, spec, record)


def init_weights(spec: str, *, registry: Any = None) -> WeightSource:
    """The weights ``init_from=spec`` names (see the module docstring)."""
    record: dict[str, Any] = {"spec": spec}
    try:
        if spec.startswith("hf:"):
            from stoker.package.hf_import import read_hf

            _cfg, state, source = read_hf(spec[3:])
            record.update(kind="hf", path=source.pop("hf_dir"), **source)
            return WeightSource(state, spec, record)
        if spec.startswith("art://"):
            from stoker.artifacts.registry import resolve_registry
            from stoker.package.source import ARCHIVE_IN_ARTIFACT

            reg = resolve_registry(registry)
            uri = reg.resolve(spec).uri
            archived = Path(str(reg.load(uri).path)) / ARCHIVE_IN_ARTIFACT
            if archived.is_file():
                record["artifact"] = uri
                return _archive(archived, spec, record)
            return checkpoint_weights(spec, registry=registry)
        p = Path(spec).expanduser()
        if p.is_file():
            if not is_archive(p):
                raise InitFromError(f"init_from={spec} is a file but not a stoker model "
                                    "archive; give a .stoker file, a run directory, a "
                                    "checkpoint step directory, art://NAME[:TAG] or hf:DIR")
            return _archive(p, spec, record)
        return checkpoint_weights(spec, registry=registry)
    except InitFromError:
        raise
    except (ArchiveError, UserError) as e:
        raise InitFromError(f"init_from={spec}: {e}") from None
