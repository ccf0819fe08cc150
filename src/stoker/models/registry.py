"""Model registry: ``architecture`` name -> (config class, model class), and ``build_model``.

Adding a model takes three pieces:

1. a module with the model (``forward`` returns a dict with ``"logits"``),
2. a Pydantic config class with ``architecture: Literal["<name>"]`` and ``extra="forbid"``,
3. ``register_model("<name>", MyConfig, "my_pkg.my_mod:MyModel")`` (the model class may be
   given as an import path so registering does not import torch), and a recipe YAML whose
   ``model:`` section sets ``architecture: <name>``.

This module imports no torch: validating configs stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel, ValidationError

from stoker.errors import ConfigError, ConfigProblem, UserError
from stoker.models.config import CNNConfig, GPTConfig, RNNConfig

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """What a registered architecture is made of."""

    name: str
    config_cls: type[BaseModel]
    model: str | type  # "module:Class" or the class itself
    description: str = ""

    def model_cls(self) -> type:
        if isinstance(self.model, str):
            mod, _, attr = self.model.partition(":")
            return getattr(importlib.import_module(mod), attr)
        return self.model


MODEL_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, config_cls: type[BaseModel], model: str | type, description: str = ""
) -> ModelSpec:
    """Register an architecture so ``build_model`` and config parsing know it."""
    field = config_cls.model_fields.get("architecture")
    if field is None or field.default != name:
        raise ValueError(
            f"{config_cls.__name__} must declare architecture: Literal[{name!r}] = {name!r}"
        )
    spec = ModelSpec(name, config_cls, model, description or (config_cls.__doc__ or "").strip())
    MODEL_REGISTRY[name] = spec
    return spec


register_model("gpt", GPTConfig, "stoker.models.gpt:GPT")
register_model("rnn", RNNConfig, "stoker.models.rnn:RNN")
register_model("cnn", CNNConfig, "stoker.models.cnn:CNN")


def model_config_union() -> Any:
    """The discriminated union over every registered config (built-ins and user ones)."""
    from typing import Annotated

    from pydantic import Field

    classes = tuple(spec.config_cls for spec in MODEL_REGISTRY.values())
    if len(classes) == 1:
        return classes[0]
    union = Union[classes]  # type: ignore[valid-type]
    return Annotated[union, Field(discriminator="architecture")]


def _plain(cfg: Any) -> Any:
    """A plain dict from an OmegaConf node or mapping (without importing omegaconf)."""
    if hasattr(cfg, "_get_node") and type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def parse_model_config(cfg: Any, *, path: str = "model") -> BaseModel:
    """Turn a mapping (or a config object) into the registered config class.

    Raises :class:`ConfigError` with one problem per invalid field (dotted under ``path``)
    and a :class:`UserError`-derived error listing valid architectures for an unknown one.
    """
    cfg = _plain(cfg)
    if isinstance(cfg, BaseModel):
        arch = getattr(cfg, "architecture", None)
        if arch in MODEL_REGISTRY and isinstance(cfg, MODEL_REGISTRY[arch].config_cls):
            return cfg
        cfg = cfg.model_dump()
    if not isinstance(cfg, dict):
        raise ConfigError(
            problems=[ConfigProblem(path, f"expected a mapping, got {type(cfg).__name__}")]
        )
    valid = ", ".join(sorted(MODEL_REGISTRY))
    arch = cfg.get("architecture")
    if arch is None:
        raise ConfigError(
            problems=[ConfigProblem(f"{path}.architecture", f"missing; one of: {valid}")]
        )
    spec = MODEL_REGISTRY.get(arch)
    if spec is None:
        hint = _suggest(str(arch), MODEL_REGISTRY)
        raise ConfigError(
            problems=[
                ConfigProblem(
                    f"{path}.architecture",
                    f"unknown architecture {arch!r}; valid ones: {valid}{hint}",
                )
            ]
        )
    try:
        return spec.config_cls.model_validate(cfg)
    except ValidationError as exc:
        raise ConfigError(problems=validation_problems(exc, path)) from None


def validation_problems(exc: ValidationError, path: str = "model") -> list[ConfigProblem]:
    """Pydantic errors as :class:`ConfigProblem` s with dotted paths under ``path``."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (path, *err["loc"]) if p != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {err['loc'][-1]!r}"
        problems.append(ConfigProblem(loc, msg))
    return problems


def _suggest(word: str, options: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f". Did you mean {close[0]!r}?" if close else ""


def build_model(cfg: Any, *, vocab_size: int | None = None) -> nn.Module:
    """Build a model from its config object, a dict or an OmegaConf node.

    ``vocab_size`` fills a language model's ``vocab_size`` when the config leaves it None
    (the trainer passes the dataset's). Initialisation draws from the global torch RNG, so
    seed it first (``torch.manual_seed``) for a reproducible model.
    """
    config = parse_model_config(cfg)
    if vocab_size is not None and "vocab_size" in type(config).model_fields:
        current = getattr(config, "vocab_size")
        if current is None:
            config = config.model_copy(update={"vocab_size": vocab_size})
        elif current < vocab_size:
            raise UserError(
                f"model.vocab_size={current} is smaller than the dataset's vocabulary "
                f"({vocab_size}); remove model.vocab_size to take it from the data"
            )
    spec = MODEL_REGISTRY[getattr(config, "architecture")]
    return spec.model_cls()(config)


def count_parameters(
    model: nn.Module, *, trainable_only: bool = False, exclude_embeddings: bool = False
) -> int:
    """Number of parameters, counting a tied (shared) tensor once.

    ``exclude_embeddings`` drops ``nn.Embedding`` weights (the usual "non-embedding" count).
    """
    from torch import nn as _nn

    skip: set[int] = set()
    if exclude_embeddings:
        skip = {id(m.weight) for m in model.modules() if isinstance(m, _nn.Embedding)}
    total = 0
    for p in model.parameters():  # parameters() yields shared tensors once
        if trainable_only and not p.requires_grad:
            continue
        if id(p) in skip:
            continue
        total += p.numel()
    return total


def describe_architectures() -> list[tuple[str, str]]:
    """(name, one-line description) of each registered architecture, for help text."""
    return [(s.name, s.description.splitlines()[0] if s.description else "")
            for s in MODEL_REGISTRY.values()]


__all__ = [
    "MODEL_REGISTRY",
    "ModelSpec",
    "UserError",
    "build_model",
    "count_parameters",
    "describe_architectures",
    "model_config_union",
    "parse_model_config",
    "register_model",
    "validation_problems",
]
