"""stoker.models: GPT (Llama-style), RNN (LSTM/GRU) and a small CNN, each with a typed config.

Configs, the registry and :func:`build_model` import no torch; the model classes
(``GPT``, ``RNN``, ``CNN``) are loaded on first access.

Adding a model: write a module with the ``nn.Module`` (forward returns ``{"logits": ...}``),
a Pydantic config class with ``architecture: Literal["name"]`` and ``extra="forbid"``, call
``register_model("name", NameConfig, "pkg.module:Name")``, and add a recipe whose
``model:`` section says ``architecture: name``.
"""
from __future__ import annotations

from stoker._lazy import lazy_getattr
from stoker.models.config import CNNConfig, GPTConfig, LM_CONFIGS, ModelConfig, RNNConfig
from stoker.models.registry import (
    MODEL_REGISTRY,
    ModelSpec,
    build_model,
    count_parameters,
    describe_architectures,
    model_config_union,
    parse_model_config,
    register_model,
)

_LAZY = {
    "GPT": "stoker.models.gpt",
    "KVCache": "stoker.models.gpt",
    "RNN": "stoker.models.rnn",
    "RNNState": "stoker.models.rnn",
    "CNN": "stoker.models.cnn",
}

__all__ = [
    "CNNConfig",
    "GPTConfig",
    "LM_CONFIGS",
    "MODEL_REGISTRY",
    "ModelConfig",
    "ModelSpec",
    "RNNConfig",
    "build_model",
    "count_parameters",
    "describe_architectures",
    "model_config_union",
    "parse_model_config",
    "register_model",
    *_LAZY,
]


__getattr__ = lazy_getattr(__name__, _LAZY)
