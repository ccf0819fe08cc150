"""One way in for ``generate`` and ``eval``: archive, run dir, step dir or ``art://`` alike.

A model artifact is either a checkpoint the trainer published or an archive ``stoker pack
--publish`` published (its directory holds ``model.stoker``); both open here, so every
command that takes a model takes all four kinds of reference.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from stoker.errors import ArchiveError, CheckpointError
from stoker.package.archive import is_archive
from stoker.package.restoring import Restored, restore

__all__ = ["ARCHIVE_IN_ARTIFACT", "checkpoint_dir", "describe_candidates", "open_model"]

ARCHIVE_IN_ARTIFACT = "model.stoker"


def describe_candidates(path: Path) -> list[str]:
    """What a directory holds that could have been a checkpoint, and why each is not one."""
    from stoker.train.checkpoint import MARKER, read_marker

    lines: list[str] = []
    for root in (path, path / "checkpoints"):
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries[:30]:
            shown = f"{root.name}/{e.name}" if root != path else e.name
            if e.is_file() and is_archive(e.path):
                lines.append(f"{shown}: a model archive; pass it itself with --checkpoint")
            elif not e.is_dir():
                continue
            elif e.name == "checkpoints" and root == path:
                continue
            elif not e.name.startswith("step-"):
                lines.append(f"{shown}/: not a step-NNNNNNNN checkpoint directory")
            elif not (Path(e.path) / MARKER).exists():
                lines.append(f"{shown}/: no {MARKER} marker, so it was never completely "
                             "written (the run stopped while saving)")
            elif read_marker(e.path) is None:
                lines.append(f"{shown}/: its {MARKER} marker is unreadable or names another "
                             "step")
    return lines


def checkpoint_dir(spec: str) -> Path:
    """The step directory behind a run dir, step dir or art:// checkpoint; when there is
    none, the error lists what the directory holds and why each entry is not one."""
    from stoker.train.loading import find_checkpoint

    try:
        return find_checkpoint(spec)
    except CheckpointError as e:
        p = Path(spec).expanduser()
        if spec.startswith("art://") or not p.is_dir():
            raise
        found = describe_candidates(p)
        listing = ("\n  " + "\n  ".join(found)) if found else " nothing that looks like one"
        raise CheckpointError(
            f"{p} holds no valid checkpoint. Found:{listing}\nGive a run directory (with "
            "checkpoints/step-NNNNNNNN/COMMITTED), a step directory, a .stoker archive or "
            f"art://NAME[:VERSION]. ({e})"
        ) from None


def _artifact_archive(uri: str, registry: Any) -> Path | None:
    from stoker.artifacts.registry import resolve_registry

    p = Path(str(resolve_registry(registry).load(uri).path)) / ARCHIVE_IN_ARTIFACT
    return p if p.is_file() else None


def model_section(trained: Any) -> dict[str, Any]:
    """The model's config as built (a built-in model's carries the vocabulary it was built
    with); your own ``_target_`` model's is its recipe node."""
    built = getattr(trained.model, "config", None)
    if hasattr(built, "model_dump"):
        return built.model_dump(mode="json")
    return trained.recipe.model.model_dump(mode="json", by_alias=True)


def open_model(spec: str | os.PathLike[str], *, trust: tuple[str, ...] | list[str] = (),
               device: str = "cpu", registry: Any = None,
               allow_nonfinite: bool = False, imports: tuple[str, ...] = ()) -> Restored:
    """The model and tokenizer behind any model reference, ready to generate or evaluate.

    Checkpoints carry the run's full config; what restore needs of it (model section, eval
    section) is put in the same shape an archive's ``config.json`` has.
    """
    text = str(spec)
    if text.startswith("art://"):
        archived = _artifact_archive(text, registry)
        if archived is not None:
            return restore(archived, trust=trust, device=device, imports=imports)
    else:
        p = Path(text).expanduser()
        if p.is_file():
            if not is_archive(p):
                raise ArchiveError(f"{p} is a file but not a stoker model archive; give a "
                                   ".stoker file from `stoker pack`, a run directory, a "
                                   "checkpoint step directory or art://NAME")
            return restore(p, trust=trust, device=device, imports=imports)
        if not p.exists():
            raise CheckpointError(f"{p} does not exist; give a .stoker archive, a run "
                                  "directory, a checkpoint step directory or art://NAME")
    from stoker.train.loading import load_trained

    ckpt = checkpoint_dir(text)
    # A checkpoint published to a registry came from elsewhere: its config imports only
    # stoker, torch and --trust. A run or step directory on disk is the user's own.
    trained = load_trained(str(ckpt), device=device, allow_nonfinite=allow_nonfinite,
                           trust=tuple(trust) if text.startswith("art://") else None,
                           imports=imports)
    config = {
        "model": model_section(trained),
        "tokenizer": None,
        "eval": {k: trained.config[k] for k in ("data", "model_inputs", "model_outputs",
                                                "losses", "metrics")
                 if k in trained.config},
    }
    lineage = {"source": {"spec": text, "checkpoint": str(trained.checkpoint)},
               "recipe": trained.config}
    return Restored(trained.model, trained.tokenizer, config, lineage, str(trained.checkpoint))
