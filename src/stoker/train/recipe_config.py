"""From what a user names to a typed recipe, with the user's code loaded first.

``compose_recipe`` composes a training config after importing the modules it needs (the
``stoker.plugins`` entry points, ``--import`` modules, the config's own ``imports:``), so
the schema it is checked against (:func:`stoker.train.recipe.recipe_schema`) knows the
user's architectures and data kinds. ``typed_recipe`` turns a composed config (or the
plain config stored in a checkpoint) into the typed recipe, reporting every problem at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stoker.errors import ConfigError, ConfigProblem
from stoker.train.recipe import TrainRecipe, recipe_schema

__all__ = ["compose_recipe", "load_recipe_code", "recipe_problems", "typed_recipe"]


def _imports_value(cfg: Any) -> Any:
    if cfg is None or "imports" not in cfg:
        return None
    from omegaconf import DictConfig, ListConfig, OmegaConf

    value = cfg["imports"] if isinstance(cfg, dict) else cfg.imports
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def _is_imports_override(text: str) -> bool:
    key = text.split("=", 1)[0].lstrip("+~")
    return key == "imports" or key.startswith("imports.") or key.startswith("imports[")


def load_recipe_code(cfg: Any, extra: Sequence[str] = ()) -> None:
    """Import the user's code a config needs (plugins, ``--import``, ``imports:``)."""
    from stoker.config.plugins import load_user_code

    load_user_code(_imports_value(cfg), extra=extra)


def compose_recipe(source: Any, overrides: Sequence[str] = (), *,
                   imports: Sequence[str] = ()) -> Any:
    """``compose(source, overrides)`` against the recipe schema, after loading user code.

    The config is composed once to read its ``imports:``; only when importing them
    registered something new (or the first composition failed on a key that only a user
    schema has) is it composed again against the extended schema.
    """
    from stoker.config import compose
    from stoker.config.plugins import load_plugins

    overrides = list(overrides or ())
    load_plugins()
    schema = recipe_schema()
    cfg = first_error = None
    try:
        cfg = compose(source, overrides, schema=schema)
    except ConfigError as exc:
        first_error = exc
        try:  # the imports alone, to load what the failing keys may belong to
            cfg = compose(source, [o for o in overrides if _is_imports_override(o)],
                          schema=schema)
        except ConfigError:
            raise exc from None
    load_recipe_code(cfg, imports)
    if first_error is not None or recipe_schema() is not schema:
        cfg = compose(source, overrides, schema=recipe_schema())
    if imports:
        _record_imports(cfg, imports)
    return cfg


def _record_imports(cfg: Any, imports: Sequence[str]) -> None:
    """Add ``--import`` modules to the config's ``imports:``, so the run's config.yaml, its
    checkpoints and a launched job load them too."""
    from omegaconf import OmegaConf

    have = list(OmegaConf.to_container(cfg.imports, resolve=True)) \
        if cfg.get("imports") is not None else []
    OmegaConf.update(cfg, "imports", [*have, *(m for m in imports if m not in have)],
                     force_add=True)


def recipe_problems(cfg: Any) -> tuple[list[ConfigProblem], Any]:
    """Every problem of a composed training config, and its resolved plain data."""
    from stoker.config.validation import check_resolved

    problems, resolved = check_resolved(cfg, recipe_schema())
    if not problems and isinstance(resolved, dict):
        problems = _section_problems(resolved)
    return problems, resolved


def _section_problems(data: dict[str, Any]) -> list[ConfigProblem]:
    """``model``/``data`` sections that name neither a registered kind nor a ``_target_``."""
    from stoker.models.registry import MODEL_REGISTRY
    from stoker.train.recipe import DATA_REGISTRY

    out = []
    for section, tag, registry in (("model", "architecture", MODEL_REGISTRY),
                                   ("data", "type", DATA_REGISTRY)):
        node = data.get(section)
        if isinstance(node, dict) and tag not in node and "_target_" not in node:
            out.append(ConfigProblem(section, f"set {section}.{tag} (one of "
                                     f"{', '.join(registry)}) or {section}._target_ (the "
                                     "import path of your own class)"))
    return out


def typed_recipe(cfg: Any) -> TrainRecipe:
    """The typed recipe of a composed config or of a plain dict (a checkpoint's config)."""
    from pydantic import ValidationError

    if isinstance(cfg, dict):
        resolved, problems = cfg, _section_problems(cfg)
    else:
        problems, resolved = recipe_problems(cfg)
    if problems:
        raise ConfigError(problems=problems)
    try:
        return recipe_schema().model_validate(resolved)
    except ValidationError as exc:
        from stoker.models.registry import validation_problems

        raise ConfigError(problems=validation_problems(exc, "")) from None
