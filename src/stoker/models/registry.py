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
    """Register an architecture so ``build_model`` and config parsing know it.

    ``config_cls`` must be a Pydantic model with ``architecture: Literal[name] = name``: the
    recipe's ``model`` section is a union of every registered config, told apart by it.
    Registering the same name again replaces the earlier entry (a re-imported module).
    """
    import typing

    fields = getattr(config_cls, "model_fields", None)
    if not isinstance(config_cls, type) or fields is None:
        raise ConfigError(
            f"register_model({name!r}, ...): the config class must be a Pydantic model "
            f"(class MyConfig(BaseModel)), got {config_cls!r}"
        )
    field = fields.get("architecture")
    literal = field is not None and typing.get_origin(field.annotation) is typing.Literal \
        and typing.get_args(field.annotation) == (name,)
    if not literal or field.default != name:
        got = "no 'architecture' field" if field is None else (
            f"architecture: {getattr(field.annotation, '__name__', field.annotation)!s}"
            f" = {field.default!r}")
        raise ConfigError(
            f"register_model({name!r}, {config_cls.__name__}, ...): {config_cls.__name__} "
            f"has {got}; it must declare `architecture: Literal[{name!r}] = {name!r}` (the "
            "tag that picks this config in a recipe's model section)"
        )
    spec = ModelSpec(name, config_cls, model, description or (config_cls.__doc__ or "").strip())
    MODEL_REGISTRY[name] = spec
    return spec


register_model("gpt", GPTConfig, "stoker.models.gpt:GPT")
register_model("rnn", RNNConfig, "stoker.models.rnn:RNN")
register_model("cnn", CNNConfig, "stoker.models.cnn:CNN")


def model_config_union() -> Any:
    """The ``model`` section's type: every registered config (built-in and user ones), told
    apart by ``architecture``, or a ``_target_`` node for any ``nn.Module``.

    Built when called (a recipe is validated), so architectures registered by the user's
    modules (``imports:``) are members.
    """
    from typing import Annotated

    from pydantic import Discriminator, Tag

    from stoker.models.config import TargetModelConfig

    members = [Annotated[spec.config_cls, Tag(name)] for name, spec in MODEL_REGISTRY.items()]
    members.append(Annotated[TargetModelConfig, Tag("_target_")])
    union = Union[tuple(members)]  # type: ignore[valid-type]
    return Annotated[union, Discriminator(_model_tag)]


def _model_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "_target_" in value and "architecture" not in value:
            return "_target_"
        return value.get("architecture")
    if hasattr(value, "target_") and not hasattr(value, "architecture"):
        return "_target_"
    return getattr(value, "architecture", None)


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
    from stoker.models.config import TargetModelConfig

    cfg = _plain(cfg)
    if isinstance(cfg, TargetModelConfig):
        return cfg
    if isinstance(cfg, dict) and "_target_" in cfg and "architecture" not in cfg:
        return TargetModelConfig.model_validate(cfg)
    if isinstance(cfg, BaseModel):
        arch = getattr(cfg, "architecture", None)
        if arch in MODEL_REGISTRY and isinstance(cfg, MODEL_REGISTRY[arch].config_cls):
            return cfg
        cfg = cfg.model_dump()
    if not isinstance(cfg, dict):
        raise ConfigError(
            problems=[ConfigProblem(path, f"expected a mapping, got {type(cfg).__name__}")]
        )
    arch = cfg.get("architecture")
    if arch is None:
        raise ConfigError(problems=[ConfigProblem(
            f"{path}.architecture",
            f"missing; one of: {', '.join(MODEL_REGISTRY)} (or a `_target_` node naming any "
            "nn.Module)")])
    spec = MODEL_REGISTRY.get(arch) if isinstance(arch, str) else None
    if spec is None:
        raise ConfigError(problems=[unknown_architecture(str(arch), path)])
    try:
        return spec.config_cls.model_validate(cfg)
    except ValidationError as exc:
        raise ConfigError(problems=validation_problems(exc, path)) from None


def unknown_architecture(arch: str, path: str = "model") -> ConfigProblem:
    """The problem for an ``architecture`` no imported module registered: what is
    registered, which user modules were imported, and how to load the one that defines it."""
    from stoker.config.plugins import imported_modules

    mods = imported_modules()
    imported = ", ".join(mods) if mods else "none"
    return ConfigProblem(
        f"{path}.architecture",
        f"unknown architecture {arch!r}; registered ones: {', '.join(sorted(MODEL_REGISTRY))}"
        f"{_suggest(arch, MODEL_REGISTRY)}. Modules imported for this config: {imported}; "
        "add the module that calls register_model(...) for it to the config's `imports:` "
        "list or pass --import MODULE",
    )


def validation_problems(exc: ValidationError, path: str = "model") -> list[ConfigProblem]:
    """Pydantic errors as :class:`ConfigProblem` s with dotted paths under ``path``."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (path, *err["loc"]) if p != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {err['loc'][-1]!r}"
        elif err["type"] == "value_error":  # a validator's own message, without pydantic's tag
            msg = msg.removeprefix("Value error, ")
        problems.append(ConfigProblem(loc, msg))
    return problems


def _suggest(word: str, options: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f". Did you mean {close[0]!r}?" if close else ""  # after a list: no period


def build_model(cfg: Any, *, vocab_size: int | None = None) -> nn.Module:
    """Build a model from its config object, a dict or an OmegaConf node.

    ``vocab_size`` fills a language model's ``vocab_size`` when the config leaves it None
    (the trainer passes the dataset's). Initialisation draws from the global torch RNG, so
    seed it first (``torch.manual_seed``) for a reproducible model.
    """
    from stoker.models.config import TargetModelConfig

    config = parse_model_config(cfg)
    if isinstance(config, TargetModelConfig):
        return _build_target(config, vocab_size)
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


def takes_vocab_size(config: Any) -> bool:
    """Whether a model config has a ``vocab_size`` the data fills (a field of a registered
    config, or an argument of a ``_target_`` model's constructor)."""
    from stoker.models.config import TargetModelConfig

    if isinstance(config, TargetModelConfig):
        from stoker.config.targets import import_target, keyword_names, signature_of

        sig = signature_of(import_target(config.target_))
        return sig is not None and "vocab_size" in keyword_names(sig)
    return "vocab_size" in type(config).model_fields


def _build_target(config: Any, vocab_size: int | None) -> nn.Module:
    """A ``_target_`` model node built with ``stoker.config.build``; a ``vocab_size``
    argument the node leaves unset is filled from the data, as for the built-in LMs."""
    from torch import nn as _nn

    from stoker.config.instantiate import build
    from stoker.config.targets import import_target, keyword_names, signature_of

    node = config.node()
    sig = signature_of(import_target(node["_target_"]))
    if vocab_size is not None and node.get("vocab_size") is None and sig is not None \
            and "vocab_size" in keyword_names(sig):
        node["vocab_size"] = vocab_size
    model = build(node, validate=False)
    if not isinstance(model, _nn.Module):
        raise ConfigError(problems=[ConfigProblem(
            "model._target_", f"{node['_target_']} built a {type(model).__name__}, not a "
            "torch.nn.Module")])
    return model


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
    "takes_vocab_size",
    "unknown_architecture",
    "validation_problems",
]
