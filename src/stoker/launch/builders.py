"""From what a user names (a recipe, an entrypoint, a script) to a config and a program.

The config is composed and validated in the launcher, so a typo stops before anything is
submitted, and exported to the task's ``config.yaml``; the job reads that file back.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from stoker.errors import ConfigError, UserError

__all__ = ["entrypoint_config", "script_program", "train_config"]


def train_config(recipe: Any, overrides: Sequence[str] = (), *, cwd: Path | None = None,
                 check_targets: bool = True) -> tuple[Any, str | None]:
    """The validated ``stoker train`` config of ``recipe`` and its pinned run directory.

    ``recipe``: a built-in name, a config file, or an already composed config tree. A run
    without ``output_dir`` gets its directory now (what ``stoker train`` would pick), made
    absolute, so the job store can show it and a rerun resumes it. ``check_targets=False``
    skips importing ``_target_`` modules (torch): the job checks them again before it runs.
    """
    from omegaconf import DictConfig, OmegaConf

    from stoker.config.overrides import apply_overrides
    from stoker.config.validation import check_resolved
    from stoker.train.recipe import recipe_schema
    from stoker.train.recipe_config import compose_recipe, load_recipe_code
    from stoker.train.run_dir import plan_run_dir

    if isinstance(recipe, DictConfig):
        cfg = recipe
        load_recipe_code(cfg)  # the user's code registers the kinds the schema must know
        if overrides:
            apply_overrides(cfg, list(overrides), schema=recipe_schema())
    else:
        cfg = compose_recipe(str(recipe), list(overrides))
    problems, resolved = check_resolved(cfg, recipe_schema(), targets=check_targets)
    if problems:
        raise ConfigError(problems=problems)
    out = resolved.get("output_dir")
    resume = resolved.get("resume") or "auto"
    if out is None and resume in ("auto", "never"):
        plan = plan_run_dir(name=resolved.get("name") or "run", output_dir=None, resume=resume)
        out = str((cwd or Path.cwd()) / plan.run_dir)
        OmegaConf.update(cfg, "output_dir", out, force_add=True)
    elif out is not None:
        out = str((cwd or Path.cwd()) / out)
    return cfg, out


def entrypoint_config(fn: Callable[..., Any], overrides: Sequence[str] = (),
                      config: str | Path | None = None) -> tuple[Any, Any]:
    """``fn``'s config tree: its signature's defaults, then ``config``, then ``overrides``.

    Returns ``(cfg, schema)``; the same composition ``python script.py ...`` does.
    """
    from omegaconf import OmegaConf

    from stoker.config.overrides import apply_overrides
    from stoker.config.schema import SignatureSchema, default_tree
    from stoker.config.files import attach_sources, load, sources_of, to_omegaconf

    schema = SignatureSchema(fn)
    code = getattr(fn, "__code__", None)
    where = f"{fn.__module__}.{fn.__qualname__}" + (f" (line {code.co_firstlineno})" if code else "")
    cfg = to_omegaconf(default_tree(schema), {"": (where, None)})
    if config:
        loaded = load(str(config))
        merged = OmegaConf.merge(cfg, loaded)
        attach_sources(merged, {**sources_of(cfg), **sources_of(loaded)})
        cfg = merged
    dirs = [Path(config).parent] if config else []
    script = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if script:
        dirs.append(Path(script).parent)
    if overrides:
        apply_overrides(cfg, list(overrides), search_path=dirs, schema=schema)
    return cfg, schema


def script_program(fn: Callable[..., Any]) -> list[str]:
    """How to start the script that runs ``fn`` again: ``[path]`` or ``["-m", module]``.

    The script must call ``stoker.main(fn)`` when run; the job gets ``-c config.yaml``.
    """
    mod = sys.modules.get(fn.__module__)
    if fn.__module__ == "__main__" or mod is None:
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            return ["-m", spec.name.removesuffix(".__main__")]
        path = getattr(main, "__file__", None)
        if not path:
            raise UserError(f"{fn.__qualname__} is defined in an interactive session; put it "
                            "in a script that calls stoker.main(fn) to launch it elsewhere")
        return [str(Path(path).resolve())]
    return ["-m", fn.__module__]
