"""W&B backend: versions live in an fsspec registry (the source of truth that resolves
``art://`` URIs, online or offline) and every publish is also logged to W&B -- as a
reference to the data, or an upload with ``upload=True`` -- with used-artifact links, so
the W&B lineage graph matches stoker's. ``stoker.init(backend="wandb")`` makes one the
process default (:mod:`stoker.track.session`).
"""
from __future__ import annotations

from typing import Any, Iterable, TypeVar

from stoker.artifacts.registry import FsspecRegistry
from stoker.artifacts.types import Artifact

A = TypeVar("A", bound=Artifact)


class WandbRegistry(FsspecRegistry):
    def __init__(self, store: FsspecRegistry, *, project: str | None = None,
                 entity: str | None = None, upload: bool = False, **_: Any) -> None:
        super().__init__(store.url, storage_options=None)
        self.store = store.store
        self.project = project
        self.entity = entity
        self.upload = upload

    def __repr__(self) -> str:
        return f"WandbRegistry({self.url!r}, project={self.project!r})"

    def publish(self, artifact: A, name: str, *, mode: str = "copy", aliases: Iterable[str] = ()) -> A:
        from stoker.artifacts.provenance import get_lineage_tracker, set_lineage_tracker
        from stoker.track.lineage import WandbTracker
        from stoker.track.wandb_utils import init_wandb_if_configured

        run = init_wandb_if_configured(project=self.project, entity=self.entity, upload=self.upload)
        tracker = get_lineage_tracker()
        if not isinstance(tracker, WandbTracker):
            tracker = WandbTracker(upload=self.upload, run=run)
            set_lineage_tracker(tracker)
        # Artifact.save() logs to the active tracker after publishing.
        return super().publish(artifact, name, mode=mode, aliases=aliases)
