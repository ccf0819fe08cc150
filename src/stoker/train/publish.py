"""Publishing a trained model to the artifact registry, with the lineage of its run.

Publishing is wiring between layers (the trainer's run directory, the artifact registry,
the run's tracking info), so it lives above both and is asked for by what starts a run:
``run_training`` (the ``stoker train`` command) adds :class:`PublishModel` to the
trainer's callbacks, and the Trainer itself knows nothing about artifacts. It runs at the
end of the run, while the metric loggers are still open, so a W&B run that is the lineage
tracker links the model too.

- :func:`register_trained_model`: a run directory's checkpoint becomes a
  :class:`~stoker.artifacts.types.ModelArtifact` whose producer records the data artifact it
  trained on. The published directory holds ``checkpoint/`` (the committed step directory
  as the trainer wrote it), ``config.yaml`` and ``env.json`` of the run.
- :class:`PublishModel`: calls it when a run finished or was stopped (not when paused),
  and records what it published in the run's ``published.json``. A run that finished
  training but whose publish failed (a full registry disk) is published by
  :meth:`PublishModel.catch_up` when the same command is run again, instead of the re-run
  saying "already finished" over a model that never reached the registry.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoker.errors import ArtifactError, RegistryError
from stoker.train.callbacks import Callback
from stoker.train.checkpoint.layout import (
    CHECKPOINTS_DIR,
    MARKER,
    resolve_checkpoint,
    step_dir_name,
)

if TYPE_CHECKING:  # pragma: no cover
    from stoker.artifacts.types import ModelArtifact
    from stoker.train.view import TrainerView

__all__ = ["PUBLISHED_FILE", "PublishModel", "published_uri", "register_trained_model"]

log = logging.getLogger("stoker.train")

# The run's record of its published models: [{"registry", "checkpoint", "uri"}, ...]
PUBLISHED_FILE = "published.json"


class PublishModel(Callback):
    """Publish the trained model (rank 0) when the run ends; ``uri`` is what was published.

    A run that ended because it reached ``trainer.max_steps`` or because a callback stopped
    it is published; a run paused by ``trainer.stop_after_steps`` is not (it is not done),
    and a failed run never reaches ``on_fit_end``. ``register_artifact=false`` in the recipe
    turns it off.
    """

    name = "PublishModel"

    def __init__(self, registry: Any = None) -> None:
        self.registry = registry
        self.uri: str | None = None

    def on_fit_end(self, trainer: TrainerView) -> None:
        ended = trainer.should_stop or trainer.step >= trainer.max_steps
        if not (ended and trainer.is_rank_zero and trainer.recipe.register_artifact):
            return
        self._publish(trainer, trainer.step, {**trainer.last_metrics, **trainer.last_eval})

    def catch_up(self, trainer: TrainerView, checkpoint: Path | None) -> str | None:
        """Publish a finished run's final checkpoint if it never reached the registry.

        Called by what starts a run when the trainer said "already finished": the previous
        run trained to the end and then failed to publish (a full registry disk, a registry
        that was down), so its model would otherwise be lost without a word. Returns the
        ``art://`` URI published now, or None when there was nothing to do (publishing
        off, not rank 0, no checkpoint, or already published to this registry).
        """
        if not (trainer.is_rank_zero and trainer.recipe.register_artifact) or checkpoint is None:
            return None
        from stoker.artifacts.registry import resolve_registry

        registry = resolve_registry(self.registry)
        found = published_uri(trainer.run_dir, trainer.recipe.name, checkpoint.name, registry)
        if found is not None:
            self.uri = found
            return None
        step = trainer.step
        metrics: dict[str, float] = {}
        if trainer.checkpoints is not None:
            for info in trainer.checkpoints.infos():
                if info.path.name == checkpoint.name:
                    step, metrics = info.step, dict(info.metrics)
        log.info("run in %s finished at step %d but its model was never published; "
                 "publishing it now", trainer.run_dir, step)
        self.registry = registry
        self._publish(trainer, step, metrics)
        return self.uri

    def _publish(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        art = register_trained_model(
            trainer.run_dir, trainer.recipe.name, step=step, metrics=metrics,
            data_path=_data_input(trainer), registry=self.registry,
        )
        self.uri = getattr(art, "uri", None) or str(art)
        log.info("registered model artifact %s", self.uri)
        checkpoint = (getattr(art, "metadata", None) or {}).get("checkpoint")
        _record_published(trainer.run_dir, self.registry, checkpoint, self.uri)


def _registry_url(registry: Any) -> str:
    """The registry's identity in ``published.json`` (its URL, else its repr)."""
    from stoker.artifacts.registry import resolve_registry

    reg = resolve_registry(registry)
    return str(getattr(reg, "url", None) or repr(reg))


def _read_published(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of ``published.json`` ([] when absent or unreadable: then the registry
    itself is asked, see :func:`published_uri`)."""
    try:
        data = json.loads((Path(run_dir) / PUBLISHED_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _record_published(run_dir: Path, registry: Any, checkpoint: str | None, uri: str) -> None:
    """Add this publish to ``published.json`` (atomically). A record that cannot be written
    costs nothing but a registry lookup on the next re-run, so it is a warning."""
    from stoker.atomic import atomic_write_text

    entries = _read_published(run_dir)
    entries.append({"registry": _registry_url(registry), "checkpoint": checkpoint, "uri": uri})
    try:
        atomic_write_text(Path(run_dir) / PUBLISHED_FILE, json.dumps(entries, indent=2) + "\n")
    except OSError as exc:
        log.warning("could not record the publish of %s in %s: %s", uri, run_dir, exc)


def published_uri(run_dir: str | Path, name: str, checkpoint: str,
                  registry: Any = None) -> str | None:
    """The ``art://`` URI under which ``checkpoint`` of ``run_dir`` was published as
    ``name`` to ``registry``, or None when it never was (or that version was removed).

    ``published.json`` answers first; without an entry (a run published before that record
    existed, or whose record could not be written) the registry's versions of ``name`` are
    searched for one made from this run directory and checkpoint.
    """
    run = Path(run_dir).resolve()
    url = _registry_url(registry)
    for entry in _read_published(run):
        if entry.get("registry") == url and entry.get("checkpoint") == checkpoint:
            return str(entry.get("uri"))
    from stoker.artifacts.registry import resolve_registry

    try:
        versions = resolve_registry(registry).versions(name)
    except (ArtifactError, RegistryError, OSError):
        return None  # unreadable: publishing will say what is wrong with the registry
    for v in reversed(versions):
        meta = (v.artifact or {}).get("metadata") or {}
        if not v.deleted and meta.get("run_dir") == str(run) \
                and meta.get("checkpoint") == checkpoint:
            return v.uri
    return None


def _data_input(trainer: TrainerView) -> str | None:
    """What the model's data input is for lineage: an ``art://`` URI or a directory.

    The built-in corpus is published once as ``stoker-corpus-<kind>`` (a no-op when a
    version with the same content fingerprint exists); a prepared directory is linked
    through the sidecar ``stoker data prepare --register`` left in it; data resolved
    from ``${art:...}`` is already recorded as used by the resolver.
    """
    path = getattr(trainer.data, "path", None)
    if path is None:
        return None
    spec = str(getattr(trainer.recipe.data, "path", "") or "")
    if spec.startswith("builtin:"):
        from stoker.artifacts.publish_data import register_builtin_dataset

        try:
            return register_builtin_dataset(path, spec.split(":", 1)[1] or "char").uri
        except (ArtifactError, RegistryError, OSError) as exc:
            log.warning("built-in dataset not registered (the model's lineage stops at "
                        "the model): %s", exc)
            return None
    return str(path)


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
    """The checkpoint of ``step`` when its commit marker is there, else the run's latest
    committed one (None when it has none); a step directory without a marker, left by a
    save that did not finish, is never published."""
    exact = run_dir / CHECKPOINTS_DIR / step_dir_name(step)
    if (exact / MARKER).is_file():
        return exact
    return resolve_checkpoint(run_dir, missing_ok=True)


def _read_env(path: Path) -> dict[str, Any]:
    """The run's ``env.json`` ({} when absent); a damaged one is an ArtifactError."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def _init_record(run: Path) -> dict[str, Any]:
    """What ``init_from`` the run started from (the trainer's ``init_from.json``), or {}.

    Read from the run directory, not from this process, so a resumed run (which does not
    load the source again) publishes the same lineage."""
    from stoker.train.init_from import INIT_FROM_FILE

    path = run / INIT_FROM_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable ({e}); it records the weights this run "
                            "started from") from None
    return data if isinstance(data, dict) else {}


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

    from stoker.artifacts.types import ModelArtifact
    from stoker.track.run import config_hash, current_run, tracking_info

    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise ArtifactError(f"Run directory {run} does not exist.")
    ckpt = _pick_checkpoint(run, step)
    cfg: dict[str, Any] = {}
    if (run / "config.yaml").is_file():
        loaded = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        cfg = loaded if isinstance(loaded, dict) else {}
    env = _read_env(run / "env.json")
    git = env.get("git") or {}
    used = list(current_run().used)
    data_uri = _data_uri(data_path, registry)
    if data_uri and data_uri not in used:
        used.insert(0, data_uri)
    init = _init_record(run)
    if init.get("artifact") and init["artifact"] not in used:
        used.append(init["artifact"])  # the pretrained model this one was fine-tuned from
    command = (run / "command.txt").read_text(encoding="utf-8").strip() if (run / "command.txt").is_file() else None
    producer = tracking_info(
        run_id=run.name, recipe=cfg.get("name") or run.parent.name,
        config_hash=config_hash(cfg) if cfg else None, command=command,
        git_commit=git.get("commit"), git_dirty=git.get("dirty"),
        code_sha256=(env.get("code") or {}).get("sha256"),
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
            architecture=(model_cfg.get("architecture") or model_cfg.get("_target_"))
            if model_cfg else None,
            metadata={"run_dir": str(run), "checkpoint": ckpt.name if ckpt else None,
                      **({"init_from": init} if init else {}),
                      # the user's code and stoker's own, told apart (env.json)
                      **{k: env[k] for k in ("code", "stoker") if k in env}},
            producer=producer,
        )
        saved = art.save(name, registry=registry, mode="copy", aliases=aliases)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return saved
