"""Evaluation: run the model over a split and reduce losses and metrics over every process.

Used by the trainer every ``trainer.eval_every`` steps and at the end, and by
``stoker eval`` on a checkpoint. Metrics keep sums, so the result over several processes
equals the result of one process over the whole split.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from stoker.models.outputs import as_preds
from stoker.train.distributed import DistEnv, all_reduce_sum
from stoker.train.keys import get_by_key

__all__ = ["evaluate", "model_inputs"]


def model_inputs(batch: Mapping[str, Any], spec: Mapping[str, str]) -> dict[str, Any]:
    """Forward arguments picked from the batch by their key paths."""
    ctx = {"batch": batch}
    return {arg: get_by_key(ctx, key) for arg, key in spec.items()}


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    *,
    inputs: Mapping[str, str],
    losses: Mapping[str, Any],
    metrics: Mapping[str, Any],
    env: DistEnv,
    autocast: Callable[[], Any] | None = None,
    max_batches: int | None = None,
    prefix: str = "eval/",
    outputs: Sequence[str] | None = None,
) -> dict[str, float]:
    """Mean loss (weighted by samples) and every metric over ``loader``, on all ranks."""
    was_training = model.training
    model.eval()
    for m in metrics.values():
        m.reset()
    sums = torch.zeros(len(losses) + 2, dtype=torch.float64)  # per-loss sums, total, count
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            batch = to_device(batch, env.device)
            ctx_cm = autocast() if autocast is not None else None
            if ctx_cm is not None:
                with ctx_cm:
                    preds = as_preds(model(**model_inputs(batch, inputs)), outputs)
            else:
                preds = as_preds(model(**model_inputs(batch, inputs)), outputs)
            context = {"batch": batch, "preds": preds}
            n = _batch_len(batch)
            total = 0.0
            for j, loss in enumerate(losses.values()):
                value = loss(**{a: get_by_key(context, k) for a, k in loss.keys.items()}).item()
                sums[j] += value * n
                total += loss.weight * value
            sums[-2] += total * n
            sums[-1] += n
            for m in metrics.values():
                m.update(**{a: get_by_key(context, k) for a, k in m.keys.items()})
    finally:
        model.train(was_training)
    sums = all_reduce_sum(sums.to(env.device), env).cpu()
    count = float(sums[-1])
    out: dict[str, float] = {}
    if count:
        out[f"{prefix}loss"] = float(sums[-2]) / count
        if len(losses) > 1:
            for j, name in enumerate(losses):
                out[f"{prefix}{name}"] = float(sums[j]) / count
    for name, m in metrics.items():
        m.sums = all_reduce_sum(m.sums.to(env.device), env).cpu()
        out[f"{prefix}{name}"] = m.compute()
    return out


def _batch_len(batch: Any) -> int:
    if isinstance(batch, Mapping):
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return int(v.shape[0])
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    return 1


def evaluate_model(
    model: Any, config: Mapping[str, Any], *, split: str | None = None,
    max_batches: int | None = None, seed: int = 0,
) -> dict[str, float]:
    """Evaluate ``model`` on one split, as described by the ``data``, ``model_inputs``,
    ``losses`` and ``metrics`` sections of ``config`` (a run's config or an archive's
    ``eval`` section), on CPU in this process."""
    from pydantic import TypeAdapter

    from stoker.config import build
    from stoker.errors import DataError
    from stoker.train.data_setup import build_data, eval_loader
    from stoker.train.distributed import DistEnv
    from stoker.train.recipe import TargetDataConfig, data_config_union, recipe_schema

    missing = [k for k in ("data", "losses") if not config.get(k)]
    if missing:
        raise DataError(f"cannot evaluate: the model comes without {' and '.join(missing)} "
                        "(an archive imported from elsewhere has no dataset to evaluate on)")
    data_cfg = TypeAdapter(data_config_union()).validate_python(dict(config["data"]))
    if split and isinstance(data_cfg, TargetDataConfig):  # your dataset takes split= itself
        data_cfg = data_cfg.model_copy(update={"eval": {**(data_cfg.eval or {}), "split": split}})
    elif split:
        data_cfg = data_cfg.model_copy(update={"eval_split": split})
    model_cfg = getattr(model, "config", None)
    if model_cfg is None and config.get("model") is not None:  # your own model class
        model_type = recipe_schema().model_fields["model"].annotation
        model_cfg = TypeAdapter(model_type).validate_python(dict(config["model"]))
    data = build_data(data_cfg, model_cfg, seed=seed)
    if data.eval is None:
        raise DataError(f"split '{split or data_cfg.eval_split or 'eval'}' has nothing to "
                        "evaluate (no complete window, or data.eval is null)")
    loader = eval_loader(data.eval, batch_size=data_cfg.eval_batch_size or data_cfg.batch_size,
                         rank=0, world_size=1, num_workers=0, collate=data.collate)
    losses = {k: build(v) for k, v in config["losses"].items()}
    metrics = {k: build(v) for k, v in (config.get("metrics") or {}).items()}
    inputs = config.get("model_inputs") or {"input_ids": "batch.input_ids"}
    return evaluate(model, loader, inputs=inputs, losses=losses, metrics=metrics,
                    env=DistEnv(), max_batches=max_batches, prefix="eval/",
                    outputs=config.get("model_outputs"))
