"""Registry, discriminated union, build_model from dicts and OmegaConf, parameter counts."""
from __future__ import annotations

import subprocess
import sys
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from stoker.errors import ConfigError
from stoker.models import (
    MODEL_REGISTRY,
    CNNConfig,
    GPTConfig,
    ModelConfig,
    RNNConfig,
    build_model,
    count_parameters,
    register_model,
)


def test_discriminated_union_picks_the_config_class():
    ta = TypeAdapter(ModelConfig)
    assert isinstance(ta.validate_python({"architecture": "gpt"}), GPTConfig)
    assert isinstance(ta.validate_python({"architecture": "rnn", "cell": "gru"}), RNNConfig)
    assert isinstance(ta.validate_python({"architecture": "cnn"}), CNNConfig)
    with pytest.raises(ValidationError, match="gpt"):
        ta.validate_python({"architecture": "transformerz"})


def test_unknown_architecture_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_model({"architecture": "gtp", "vocab_size": 5})
    msg = str(e.value)
    assert "model.architecture" in msg and "cnn, gpt, rnn" in msg and "'gpt'" in msg
    assert e.value.exit_code == 2


def test_every_field_is_documented():
    for cls in (GPTConfig, RNNConfig, CNNConfig):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_build_from_omegaconf_and_config_object():
    from omegaconf import OmegaConf

    node = OmegaConf.create({"architecture": "rnn", "vocab_size": 7, "dim": 8, "n_layers": 1})
    torch.manual_seed(0)
    a = build_model(node)
    torch.manual_seed(0)
    b = build_model(RNNConfig(vocab_size=7, dim=8, n_layers=1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_count_parameters_counts_tied_weights_once():
    torch.manual_seed(0)
    m = build_model(GPTConfig(vocab_size=10, n_layers=1, dim=16, n_heads=2))
    emb = 10 * 16
    assert count_parameters(m) == sum(p.numel() for p in m.parameters())
    assert count_parameters(m, exclude_embeddings=True) == count_parameters(m) - emb


def test_register_a_new_model():
    class TinyConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")
        architecture: Literal["tiny-test"] = "tiny-test"
        classes: int = 3

    class Tiny(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.lin = torch.nn.Linear(4, cfg.classes)

        def forward(self, x):
            return {"logits": self.lin(x)}

    register_model("tiny-test", TinyConfig, Tiny)
    try:
        m = build_model({"architecture": "tiny-test", "classes": 5})
        assert m(torch.zeros(2, 4))["logits"].shape == (2, 5)
    finally:
        MODEL_REGISTRY.pop("tiny-test")


def test_configs_do_not_import_torch():
    code = ("import sys; from stoker.models import GPTConfig, ModelConfig, build_model; "
            "GPTConfig(vocab_size=3); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
