"""``stoker.init``: the process defaults a Python session starts a run with.

It picks the artifact registry backend (``fsspec`` on any URL, or ``wandb``: the same
fsspec registry, with every publish also logged to W&B) and points ``${art:NAME,FIELD}``
in configs at that registry. It lives here, above the artifacts layer, because the W&B
backend is a tracking concern; the artifacts layer only keeps the default it is given
(:func:`stoker.artifacts.registry.set_default`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from stoker.artifacts.registry import (
    ArtifactRegistry,
    FsspecRegistry,
    KitConfig,
    default_registry_path,
    set_default,
)
from stoker.errors import ArtifactError

__all__ = ["init"]


def init(backend: str = "fsspec", registry_path: str | Path | None = None, *,
         project: str | None = None, entity: str | None = None, **options: Any) -> ArtifactRegistry:
    """Set the process-default registry (``fsspec``: any fsspec URL; ``wandb``: log to W&B)
    and install the ``${art:...}`` config resolver against it.

    Code that wants no process default passes ``registry=Registry(url)`` explicitly.
    """
    from stoker.artifacts.resolver import install

    path = str(registry_path) if registry_path is not None else default_registry_path()
    if backend == "fsspec":
        reg: ArtifactRegistry = FsspecRegistry(path, storage_options=options.pop("storage_options", None))
    elif backend == "wandb":
        from stoker.track.wandb_registry import WandbRegistry

        reg = WandbRegistry(FsspecRegistry(path), project=project, entity=entity, **options)
    else:
        raise ArtifactError(f"Unknown registry backend {backend!r}; use 'fsspec' or 'wandb'.")
    set_default(KitConfig(backend=backend, registry_path=path, project=project, entity=entity,
                          initialized=True, options=options, registry=reg))
    install()
    return reg
