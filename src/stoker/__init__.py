"""stoker: reproducible ML training recipes on PyTorch.

Public names are resolved lazily so that ``import stoker`` (and ``stoker --help``) stays
fast and never imports torch until something needs it.
"""
from __future__ import annotations

from stoker._lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # config
    "Config": "stoker.config.nodes",
    "Partial": "stoker.config.nodes",
    "build": "stoker.config.instantiate",
    "konfig": "stoker.config.konfig",
    "cli": "stoker.cli.kit_cli",
    "ConfigManager": "stoker.config.kit_helpers",
    "parse_config_and_overrides": "stoker.config.kit_helpers",
    "load_omegaconf_yaml": "stoker.config.kit_helpers",
    "apply_hydra_overrides": "stoker.config.kit_helpers",
    "omegaconf_to_dataclass": "stoker.config.kit_helpers",
    # user entrypoints
    "entrypoint": "stoker.cli.entrypoint",
    "factory": "stoker.cli.entrypoint",
    "main": "stoker.cli.entrypoint",
    # launching
    "Experiment": "stoker.launch.experiment",
    # artifacts and registry
    "Artifact": "stoker.artifacts.types",
    "DataBlendsArtifact": "stoker.artifacts.types",
    "PretrainBlendsArtifact": "stoker.artifacts.types",
    "SFTDataArtifact": "stoker.artifacts.types",
    "SplitJsonlDataArtifact": "stoker.artifacts.types",
    "ModelArtifact": "stoker.artifacts.types",
    "InputDatasetInfo": "stoker.artifacts.types",
    "TrackingInfo": "stoker.artifacts.types",
    "print_step_complete": "stoker.artifacts.types",
    "init": "stoker.track.session",
    "get_config": "stoker.artifacts.registry",
    "is_initialized": "stoker.artifacts.registry",
    "Registry": "stoker.artifacts.registry",
    "ArtifactRegistry": "stoker.artifacts.registry",
    "ArtifactEntry": "stoker.artifacts.registry",
    "ArtifactVersion": "stoker.artifacts.registry",
    # data
    "TokenWindowDataset": "stoker.data.datasets",
    "ResumableSampler": "stoker.data.sampler",
    "DataBlend": "stoker.data.blend",
    "PackedSFTDataset": "stoker.data.sft",
    "load_tokenizer": "stoker.data.tokenizers",
    "ensure_default_dataset": "stoker.data.corpus",
    # training pieces (checkpoints, callbacks, loggers)
    "CheckpointManager": "stoker.train.checkpoint",
    "Callback": "stoker.train.callbacks",
    "make_loggers": "stoker.track.loggers",
    # tracking
    "LineageTracker": "stoker.artifacts.provenance",
    "NoOpTracker": "stoker.artifacts.provenance",
    "WandbTracker": "stoker.track.lineage",
    "MlflowTracker": "stoker.track.lineage",
    "get_lineage_tracker": "stoker.artifacts.provenance",
    "set_lineage_tracker": "stoker.artifacts.provenance",
    "init_wandb_if_configured": "stoker.track.wandb_utils",
    "add_wandb_tags": "stoker.track.wandb_utils",
    "finish_wandb": "stoker.track.wandb_utils",
    "to_wandb_uri": "stoker.track.wandb_utils",
    "tokenizer_to_uri": "stoker.artifacts.names",
    # models and generation
    "build_model": "stoker.models",
    "GPTConfig": "stoker.models",
    "RNNConfig": "stoker.models",
    "CNNConfig": "stoker.models",
    "ModelConfig": "stoker.models",
    "sample_text": "stoker.infer.generate",
    "complete": "stoker.infer.text",
    # model archives
    "pack": "stoker.package.packing",
    "restore": "stoker.package.restoring",
    "open_model": "stoker.package.source",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
