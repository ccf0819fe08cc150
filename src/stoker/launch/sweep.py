"""Sweeps as experiments: one task per point, each with its own run directory.

``stoker train gpt-char optim.lr=1e-3,3e-3 seed=1,2 -m`` expands (Hydra's multirun grammar,
:mod:`stoker.config.sweeps`) into four points; every point is composed and validated before
anything is submitted (a bad value names its point), then added to the experiment as a
task named by its values (``optim.lr=0.001,seed=1``). Run directories:

* ``output_dir`` set and not swept: ``OUTPUT_DIR/<i>_<key>-<value>_...`` per point;
* no ``output_dir``: one fresh ``outputs/<name>/<timestamp>/`` for the sweep, the points
  inside it the same way;
* ``output_dir`` swept: each point's own value.

The names carry no ``=`` or ``,``, so a point's directory can be typed back as
``output_dir=...`` to resume it by hand; the store records which point ran where.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from stoker.errors import ConfigError, ConfigProblem, UserError

__all__ = ["add_entrypoint_sweep", "add_train_sweep", "sweep_points"]


def sweep_points(overrides: Sequence[str], *, search_dirs: Sequence[Path] = (),
                 schema: Any = None) -> list[Any]:
    """The points of ``overrides``; refuses overrides without a sweep (``-m`` needs one)."""
    from stoker.config.sweeps import expand_sweep, group_options

    points = expand_sweep(overrides, options=lambda key: group_options(key, search_dirs, schema))
    if not any(p.values for p in points):
        raise UserError("-m (multirun) runs a sweep, but no override gives a key several "
                        "values; write e.g. optim.lr=1e-3,3e-3, seed=range(1,4) or "
                        "model=choice(a,b) (or drop -m to run once)")
    return points


def _point_problems(point: Any, error: Exception) -> list[ConfigProblem]:
    """``error``'s problems, each prefixed with the point that has it."""
    where = f"point {point.index} ({point.label})"
    problems = getattr(error, "problems", None) or [ConfigProblem("", str(error))]
    return [ConfigProblem(f"{where} {p.path}".rstrip(), p.message, p.file, p.line)
            for p in problems]


def _unique_names(points: list[Any]) -> list[str]:
    names: list[str] = []
    for p in points:
        name = p.label
        while name in names:  # the same value twice (seed=1,1): still one task each
            name += f"#{p.index}"
        names.append(name)
    return names


def _place(cfg: Any, point: Any, swept: set[str], bases: dict[str, Path], cwd: Path) -> None:
    """Give the point's config its own ``output_dir`` (see the module docstring), absolute:
    a job that starts in a shipped copy of the code still writes where the store says."""
    from omegaconf import OmegaConf

    if "output_dir" in swept:
        return
    out = OmegaConf.select(cfg, "output_dir", default=None)
    if out is None:
        from stoker.train.run_dir import plan_run_dir

        name = str(OmegaConf.select(cfg, "name", default=None) or "run")
        if name not in bases:  # one fresh folder per sweep (per name, when name is swept)
            bases[name] = plan_run_dir(name=name, output_dir=None, resume="never").run_dir
        base = bases[name]
    else:
        base = Path(str(out))
    OmegaConf.update(cfg, "output_dir", str(cwd / base / point.dir_name()), force_add=True)


def add_train_sweep(exp: Any, recipe: Any, overrides: Sequence[str], *, executor: Any = None,
                    check_targets: bool = True, imports: Sequence[str] = ()) -> list[str]:
    """Add one ``stoker train`` task per point to ``exp`` (``imports``: the user's modules,
    as ``--import``); returns the task names."""
    from stoker.train.recipe import recipe_schema
    from stoker.train.recipe_config import compose_recipe

    dirs = [Path(str(recipe)).parent] if Path(str(recipe)).is_file() else []
    dirs.append(exp.cwd)
    points = sweep_points(overrides, search_dirs=dirs, schema=recipe_schema())
    swept = {k for p in points for k in p.values}
    problems: list[ConfigProblem] = []
    cfgs = []
    bases: dict[str, Path] = {}
    for p in points:
        try:
            cfg = compose_recipe(recipe, p.overrides, imports=imports)
            _place(cfg, p, swept, bases, exp.cwd)
            cfgs.append(cfg)
        except UserError as e:
            problems.extend(_point_problems(p, e))
    if problems:
        raise ConfigError(problems=problems)
    return _add_points(exp, points, cfgs, lambda cfg, name, point: exp.add_train(
        cfg, name=name, executor=executor, check_targets=check_targets, point=point))


def add_entrypoint_sweep(exp: Any, fn: Callable[..., Any], overrides: Sequence[str], *,
                         config: str | Path | None = None, executor: Any = None) -> list[str]:
    """Add one task of ``fn``'s script per point; a function with an ``output_dir``
    argument gets a folder per point inside it."""
    from stoker.config.schema import SignatureSchema
    from stoker.launch.builders import entrypoint_config

    import sys

    dirs = [Path(config).parent] if config else []
    script = getattr(sys.modules.get(fn.__module__), "__file__", None)
    if script:
        dirs.append(Path(script).parent)  # where entrypoint_config looks for config groups
    points = sweep_points(overrides, search_dirs=dirs, schema=SignatureSchema(fn))
    swept = {k for p in points for k in p.values}
    has_out = "output_dir" in SignatureSchema(fn).fields()
    problems: list[ConfigProblem] = []
    point_overrides = []
    for p in points:
        try:
            cfg, _ = entrypoint_config(fn, p.overrides, config)
            extra = []
            if has_out and "output_dir" not in swept:
                from omegaconf import OmegaConf

                out = OmegaConf.select(cfg, "output_dir", default=None)
                if out is not None:
                    extra = [f"output_dir={exp.cwd / str(out) / p.dir_name()}"]
            point_overrides.append([*p.overrides, *extra])
        except UserError as e:
            problems.extend(_point_problems(p, e))
    if problems:
        raise ConfigError(problems=problems)
    return _add_points(exp, points, point_overrides, lambda ov, name, point: exp.add_entrypoint(
        fn, ov, config=config, name=name, executor=executor, point=point))


def _add_points(exp: Any, points: list[Any], items: list[Any],
                add: Callable[[Any, str, dict[str, str]], str]) -> list[str]:
    """Validate-and-add each point (every point's problems reported together, nothing
    added when one has any), then mark the experiment a sweep."""
    problems: list[ConfigProblem] = []
    names = []
    before = exp.task_names()
    for p, name, item in zip(points, _unique_names(points), items):
        try:
            names.append(add(item, name, dict(p.values)))
        except UserError as e:
            problems.extend(_point_problems(p, e))
    if problems:
        exp.remove_tasks([n for n in exp.task_names() if n not in before])
        raise ConfigError(problems=problems)
    keys = list(dict.fromkeys(k for p in points for k in p.values))
    exp.sweep = {"keys": keys, "points": len(points)}
    return names
