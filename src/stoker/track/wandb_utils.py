"""Small W&B helpers (the Nemotron kit's names). None of them imports wandb unless W&B is
actually configured, so code can call them unconditionally."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from stoker.artifacts.names import parse_ref, tokenizer_to_uri

__all__ = ["wandb_configured", "init_wandb_if_configured", "add_wandb_tags", "finish_wandb",
           "to_wandb_name", "to_wandb_uri", "tokenizer_to_uri"]


def wandb_configured(project: str | None = None) -> bool:
    """W&B is configured when a project is given/set, W&B mode is set, or
    ``stoker.init(backend="wandb")`` was called."""
    from stoker.artifacts.registry import get_config

    return bool(project or os.environ.get("WANDB_PROJECT") or os.environ.get("WANDB_MODE")
                or get_config().backend == "wandb")


def init_wandb_if_configured(*, project: str | None = None, entity: str | None = None,
                             config: dict[str, Any] | None = None, name: str | None = None,
                             tags: Iterable[str] = (), job_type: str | None = None,
                             dir: str | Path | None = None, upload: bool = False) -> Any:
    """Start a W&B run (and make it the lineage tracker) if W&B is configured; else None."""
    if not wandb_configured(project):
        return None
    import wandb

    from stoker.artifacts.registry import get_config
    from stoker.track.lineage import WandbTracker, set_lineage_tracker

    cfg = get_config()
    if wandb.run is None:
        wandb.init(project=project or cfg.project or os.environ.get("WANDB_PROJECT") or "stoker",
                   entity=entity or cfg.entity, config=config, name=name,
                   tags=list(tags) or None, job_type=job_type,
                   dir=str(dir) if dir else None)
    set_lineage_tracker(WandbTracker(upload=upload))
    return wandb.run


def add_wandb_tags(tags: Iterable[str]) -> None:
    """Add tags to the active W&B run (no-op without one)."""
    if "wandb" not in sys.modules:
        return
    import wandb

    run = wandb.run
    if run is None:
        return
    run.tags = tuple(dict.fromkeys([*(run.tags or ()), *tags]))


def finish_wandb(exit_code: int = 0) -> None:
    """Finish the active W&B run with ``exit_code`` (no-op without one)."""
    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
    from stoker.track.lineage import WandbTracker, get_lineage_tracker, set_lineage_tracker

    if isinstance(get_lineage_tracker(), WandbTracker):
        set_lineage_tracker(None)


def to_wandb_name(name: str) -> str:
    """W&B artifact names allow letters, digits, '-', '_' and '.'."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def to_wandb_uri(uri: str, *, entity: str | None = None, project: str | None = None) -> str:
    """``art://name:v3`` -> ``[entity/project/]name:stoker-v3`` (W&B counts from v0, so
    stoker versions travel as ``stoker-vN`` aliases); aliases and ``latest`` map as is."""
    ref = parse_ref(uri)
    sel = f"stoker-v{ref.version}" if ref.version is not None else ref.alias
    prefix = "/".join(p for p in (entity, project) if p)
    return f"{prefix + '/' if prefix else ''}{to_wandb_name(ref.name)}:{sel}"
