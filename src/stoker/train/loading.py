"""Open a trained model from a checkpoint, a run directory or an ``art://`` model artifact.

Used by ``stoker eval`` and ``stoker generate text``: the checkpoint carries the resolved
config, so the model is rebuilt exactly as it was trained, and the run directory's copy of
the tokenizer turns ids back into text.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoker.errors import CheckpointError

__all__ = ["TrainedModel", "find_checkpoint", "load_trained"]


@dataclass
class TrainedModel:
    model: Any
    recipe: Any  # TrainRecipe
    config: dict[str, Any]
    checkpoint: Path
    tokenizer: Any | None

    def sample(self, prompt: str, *, max_new_tokens: int = 200, temperature: float = 0.8,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = 0) -> str:
        from stoker.errors import UserError
        from stoker.infer.generate import check_lm_contract, sample_text

        if self.tokenizer is None:
            raise UserError(
                f"{self.checkpoint} is not a language model checkpoint (model: "
                f"{_model_name(self.recipe.model)}, trained without a tokenizer); text "
                "generation needs a model trained on token data"
            )
        check_lm_contract(self.model, vocab_size=getattr(self.tokenizer, "vocab_size", None))
        return sample_text(self.model, self.tokenizer, prompt, max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)


def _model_name(cfg: Any) -> str:
    arch = getattr(cfg, "architecture", None)
    return f"architecture={arch}" if arch else f"_target_={getattr(cfg, 'target_', '?')}"


def _from_artifact(uri: str) -> Path:
    from stoker.artifacts.registry import resolve_registry

    art = resolve_registry(None).load(uri)  # the artifact, its path in the registry's store
    path = Path(art.path)
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def find_checkpoint(path: str) -> Path:
    """A committed step directory from a step dir, a checkpoints dir, a run dir or art://."""
    from stoker.train.checkpoint import resolve_checkpoint

    p = _from_artifact(path) if path.startswith("art://") else Path(path).expanduser()
    return resolve_checkpoint(p)


def _recipe_from_config(config: dict[str, Any], imports: Sequence[str] = ()) -> Any:
    """The run's typed recipe, after importing the user's code its ``imports:`` name; its
    ``${oc.env:...}`` values (kept unresolved in what a run saves) are resolved from this
    process's environment now."""
    import json

    from stoker.train.recipe_config import load_recipe_code, typed_recipe

    if "oc.env" in json.dumps(config, default=str):
        from stoker.config import to_container
        from stoker.config.files import to_omegaconf

        config = to_container(to_omegaconf(config), resolve=True)
    load_recipe_code(config, imports)
    return typed_recipe(config)


def check_config_trusted(config: dict[str, Any], trust: Sequence[str], *,
                         source: str = "checkpoint") -> None:
    """Refuse (before anything is built or called) a config from a registry that the trust
    rule refuses: every bad ``_target_`` and ``imports:`` module at once, with its path."""
    from stoker.config.targets import refuse_untrusted

    refuse_untrusted(config, trust, source=source)


def _tokenizer_near(ckpt: Path, recipe: Any) -> Any | None:
    """The run's tokenizer copy, else the one of the dataset it trained on."""
    from stoker.data.tokenizers import load_tokenizer

    for cand in (ckpt.parent.parent / "tokenizer", ckpt.parent / "tokenizer", ckpt / "tokenizer"):
        if cand.is_dir():
            return load_tokenizer(cand)
    if getattr(recipe.data, "type", None) == "tokens":
        from stoker.train.data_setup import resolve_data_path

        return load_tokenizer(resolve_data_path(recipe.data.path))
    return None


def load_trained(path: str, *, device: str = "cpu", allow_nonfinite: bool = False,
                 trust: Sequence[str] | None = None, imports: Sequence[str] = ()
                 ) -> TrainedModel:
    """The model of a checkpoint, rebuilt from its own config (``imports`` are extra modules
    to load besides the ones its ``imports:`` names); weights with NaN/inf are refused
    (CheckpointError naming the tensor) unless ``allow_nonfinite``. With ``trust`` (a config
    from a registry), the whole config passes the trust rule
    (:func:`stoker.config.targets.judge_target`) before anything is built or called."""
    import torch

    from stoker.models import build_model
    from stoker.train.checkpoint import check_model_compatible, load_checkpoint

    ckpt = find_checkpoint(path)
    state = load_checkpoint(ckpt, keys=("model", "config"), allow_nonfinite=allow_nonfinite)
    config = state.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{ckpt} holds no config; it was not written by `stoker train`")
    if trust is not None:
        check_config_trusted(config, trust, source=f"checkpoint {path}")
    recipe = _recipe_from_config(config, imports)
    vocab = None
    weights = state["model"]
    model_args = getattr(recipe.model, "model_extra", None) or {}
    if getattr(recipe.model, "vocab_size", model_args.get("vocab_size", "absent")) is None:
        for key in ("tok_emb.weight", "lm_head.weight"):
            if key in weights:
                vocab = int(weights[key].shape[0])
                break
    model = build_model(recipe.model, vocab_size=vocab)
    problems = check_model_compatible(model, weights)
    if problems:
        raise CheckpointError(f"{ckpt} does not fit the model of its own config:\n  "
                              + "\n  ".join(problems[:20]))
    model.load_state_dict(weights)
    model.to(torch.device(device)).eval()
    tok = _tokenizer_near(ckpt, recipe) if getattr(recipe.model, "architecture", None) \
        != "cnn" else None
    return TrainedModel(model, recipe, config, ckpt, tok)
