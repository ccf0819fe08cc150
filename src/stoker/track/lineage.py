"""Lineage trackers for W&B and MLflow: where published artifacts (and the inputs they
used) are reported.

The registry is the source of truth for lineage; a tracker mirrors it into an experiment
tracker so the graph shows up there too. The protocol and the process default
(:func:`set_lineage_tracker`; with none set, a :class:`NoOpTracker`) belong to the artifacts
layer (:mod:`stoker.artifacts.provenance`), which publishes without importing trackers; they
are re-exported here beside the implementations.
"""
from __future__ import annotations

from typing import Any

from stoker.artifacts.provenance import (  # noqa: F401 - the tracker API in one place
    LineageTracker,
    NoOpTracker,
    get_lineage_tracker,
    set_lineage_tracker,
)

__all__ = ["LineageTracker", "NoOpTracker", "get_lineage_tracker", "set_lineage_tracker",
           "WandbTracker", "MlflowTracker"]


class WandbTracker:
    """Logs artifacts to the active W&B run (a reference to the data, or an upload) and
    links the artifacts the run used, so W&B draws the same lineage graph."""

    name = "wandb"

    def __init__(self, *, upload: bool = False, run: Any = None) -> None:
        self.upload = upload
        self._run = run
        self.logged: list[str] = []

    @property
    def run(self) -> Any:
        if self._run is not None:
            return self._run
        import wandb

        return wandb.run

    def is_active(self) -> bool:
        import sys

        if self._run is None and "wandb" not in sys.modules:
            return False  # never import wandb just to find out nothing is running
        return self.run is not None

    def get_run_id(self) -> str | None:
        run = self.run
        return run.id if run is not None else None

    def get_run_url(self) -> str | None:
        run = self.run
        return getattr(run, "url", None) if run is not None else None

    def _wandb_artifact(self, artifact: Any, name: str) -> Any:
        import wandb

        from stoker.track.wandb_utils import to_wandb_name

        record = artifact.to_record()
        wa = wandb.Artifact(name=to_wandb_name(name), type=_wandb_type(artifact.type),
                            metadata={"stoker_uri": artifact.uri, "record": record})
        path = str(artifact.path)
        if "://" in path:
            wa.add_reference(path, checksum=False)
        else:
            import os

            local = os.path.abspath(path)
            if self.upload:
                (wa.add_dir if os.path.isdir(local) else wa.add_file)(local)
            else:
                wa.add_reference("file://" + local, checksum=False)
        return wa

    def log_artifact(self, artifact: Any, name: str, used_artifacts: list[str]) -> None:
        run = self.run
        if run is None:
            return
        for uri in used_artifacts:
            self.use_artifact(uri)
        wa = self._wandb_artifact(artifact, name)
        aliases = [f"stoker-v{artifact.version}"] if artifact.version else []
        run.log_artifact(wa, aliases=aliases)
        self.logged.append(artifact.uri or name)

    def use_artifact(self, artifact: Any) -> None:
        """Link an input. ``artifact`` is an Artifact or an ``art://name:vN`` string."""
        run = self.run
        if run is None:
            return
        from stoker.track.wandb_utils import to_wandb_uri

        uri = artifact if isinstance(artifact, str) else artifact.uri
        if uri is None:
            return
        if getattr(getattr(run, "settings", None), "_offline", False) or _offline():
            # offline runs cannot look names up on the server: record the link in the config
            used = list(run.config.get("stoker_used_artifacts", []) or [])
            if uri not in used:
                used.append(uri)
                run.config.update({"stoker_used_artifacts": used}, allow_val_change=True)
            return
        run.use_artifact(to_wandb_uri(uri))


class MlflowTracker:
    """Records artifacts on the active MLflow run: the record as a JSON run artifact, the
    URI and used inputs as tags (MLflow has no artifact graph of its own)."""

    name = "mlflow"

    def is_active(self) -> bool:
        import sys

        if "mlflow" not in sys.modules:
            return False
        import mlflow

        return mlflow.active_run() is not None

    def get_run_id(self) -> str | None:
        import mlflow

        run = mlflow.active_run()
        return run.info.run_id if run else None

    def get_run_url(self) -> str | None:
        import mlflow

        run = mlflow.active_run()
        return f"{mlflow.get_tracking_uri()}#runs/{run.info.run_id}" if run else None

    def log_artifact(self, artifact: Any, name: str, used_artifacts: list[str]) -> None:
        import mlflow

        if mlflow.active_run() is None:
            return
        mlflow.log_dict(artifact.to_record(), f"stoker_artifacts/{name}-v{artifact.version}.json")
        mlflow.set_tag(f"stoker.artifact.{name}", artifact.uri or "")
        if used_artifacts:
            mlflow.set_tag("stoker.used_artifacts", ",".join(used_artifacts))

    def use_artifact(self, artifact: Any) -> None:
        import mlflow

        if mlflow.active_run() is None:
            return
        uri = artifact if isinstance(artifact, str) else artifact.uri
        run = mlflow.active_run()
        prev = run.data.tags.get("stoker.used_artifacts", "") if run else ""
        items = [u for u in prev.split(",") if u]
        if uri and uri not in items:
            items.append(uri)
            mlflow.set_tag("stoker.used_artifacts", ",".join(items))


def _offline() -> bool:
    import os

    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")


def _wandb_type(t: str) -> str:
    return {"ModelArtifact": "model"}.get(t, "dataset" if "Data" in t else t.lower() or "artifact")
