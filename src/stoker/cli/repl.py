"""``--repl``: an interactive Python session holding a command's resolved config and the
objects built from it, instead of running (NeMo-Run documents one; its own is broken).

``stoker train RECIPE ... --repl`` gives ``cfg`` (the composed tree), ``config`` (resolved,
plain data), ``recipe`` (the typed :class:`~stoker.train.recipe.TrainRecipe`) and, built
the way the trainer builds them (seeded first, so the weights are the run's initial ones),
``data``, ``model`` and ``optimizer``. An entrypoint script's ``--repl`` gives ``cfg``,
``kwargs`` (the typed arguments) and ``fn``: ``fn(**kwargs)`` runs it. The banner lists
what is there; nothing is written and nothing trains. It reads from stdin, so it can be
scripted: ``echo 'print(recipe.optim)' | stoker train gpt-char --repl``.
"""
from __future__ import annotations

import code
import sys
from typing import Any, Callable

__all__ = ["entrypoint_repl", "open_repl", "train_repl"]


def _describe(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}" if t.__module__ != "builtins" else t.__qualname__


def open_repl(namespace: dict[str, Any], title: str, notes: list[str] = ()) -> int:
    """Start ``code.interact`` with ``namespace``; returns 0 when the session ends."""
    width = max(len(k) for k in namespace)
    lines = [f"stoker --repl: {title}", "Names in this session:"]
    lines += [f"  {k.ljust(width)}  {_describe(v)}" for k, v in namespace.items()]
    lines += [*notes, "Nothing was run or written. Ctrl-D (or exit()) leaves."]
    sys.stdout.flush()
    code.interact(banner="\n".join(lines), local=dict(namespace), exitmsg="")
    return 0


def train_repl(cfg: Any, title: str) -> int:
    """The REPL of ``stoker train ... --repl`` (see the module docstring)."""
    from stoker.config import to_container
    from stoker.errors import StokerError
    from stoker.train.recipe_config import typed_recipe

    recipe = typed_recipe(cfg)
    ns: dict[str, Any] = {"cfg": cfg, "config": to_container(cfg, resolve=True),
                          "recipe": recipe}
    notes = []
    try:
        ns.update(_build_training(recipe))
    except (StokerError, OSError, ValueError, RuntimeError) as e:
        notes.append(f"data/model/optimizer not built: {e}")
    return open_repl(ns, title, notes)


def _build_training(recipe: Any) -> dict[str, Any]:
    """Data, model and optimizer as the trainer builds them (same seed, same order)."""
    import torch

    from stoker.models import build_model
    from stoker.train.data_setup import build_data
    from stoker.train.optim import build_optimizer
    from stoker.train.rng import seed_everything

    if recipe.trainer.num_threads:
        torch.set_num_threads(recipe.trainer.num_threads)
    seed_everything(recipe.seed)
    data = build_data(recipe.data, recipe.model, seed=recipe.seed)
    model = build_model(recipe.model, vocab_size=data.vocab_size)
    return {"data": data, "model": model, "optimizer": build_optimizer(recipe.optim, model)}


def entrypoint_repl(fn: Callable[..., Any], cfg: Any, kwargs: dict[str, Any], title: str) -> int:
    """The REPL of an entrypoint script's ``--repl``."""
    return open_repl({"cfg": cfg, "kwargs": kwargs, "fn": fn}, title,
                     [f"fn(**kwargs) runs {fn.__name__} with these arguments."])
