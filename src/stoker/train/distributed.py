"""Distributed training through ``torch.distributed``, started by ``torchrun``.

torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``; :func:`setup` reads
them, opens the process group (gloo on CPU, nccl on CUDA) and :func:`wrap_model` applies
DDP or FSDP2 (``fully_shard``). A single process (no torchrun) is the world of size 1 and
nothing is wrapped, so the same loop runs everywhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from stoker.models.unwrap import unwrap_model

__all__ = ["DistEnv", "setup", "teardown", "wrap_model", "all_reduce_mean", "any_flag",
           "full_model_state", "load_full_model_state", "full_optim_state", "load_full_optim_state",
           "sharded_state", "load_sharded_state"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        from stoker.errors import UserError

        raise UserError("trainer.device=cuda but no CUDA GPU is visible; use trainer.device=auto")
    return torch.device("cuda", local_rank)


def setup(requested_device: str = "auto") -> DistEnv:
    """Join the torchrun process group when there is one; else a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=device)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv, strategy: str) -> nn.Module:
    """DDP (replicated) or FSDP2 (sharded parameters) when the world is larger than one."""
    if not env.is_distributed:
        return model
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules())[1:]:
            # shard each transformer block / layer container that owns parameters directly
            if type(module).__name__ in {"Block", "TransformerBlock", "DecoderLayer"}:
                fully_shard(module)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


def all_reduce_mean(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.is_distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= env.world_size
    return values


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.is_distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_flag(flag: bool, env: DistEnv) -> bool:
    """True on every rank when any rank raised it (so all stop at the same step)."""
    if not env.is_distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    if not env.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.is_distributed:
        dist.barrier()


def is_sharded(model: nn.Module) -> bool:
    """True when FSDP2 sharded ``model``: its forward is then a collective every rank runs."""
    return any(type(m).__name__.startswith("FSDP") for m in model.modules())


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A full, unsharded CPU state dict (FSDP2 gathers; DDP/plain unwrap)."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return unwrap_model(model).state_dict()


def load_full_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        return
    unwrap_model(model).load_state_dict(state)


def full_optim_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def load_full_optim_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a full optimizer state of either spelling: keyed by parameter index (what
    ``optimizer.state_dict()`` saves in single/DDP runs) or by parameter name (what FSDP2
    and sharded checkpoints hold), so a checkpoint moves between the two freely."""
    if is_sharded(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        set_optimizer_state_dict(
            model, optimizer, _optim_by_name(model, optimizer, state),
            options=StateDictOptions(full_state_dict=True)
        )
        return
    optimizer.load_state_dict(_optim_by_index(model, optimizer, state))


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each optimizer parameter, in the index order of ``optimizer.state_dict()``."""
    names = {id(p): n for n, p in unwrap_model(model).named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def _keyed_by_name(state: dict[str, Any]) -> bool:
    groups = state.get("param_groups") or []
    return any(isinstance(p, str) for g in groups for p in g.get("params", []))


def _optim_by_name(model: nn.Module, optimizer: torch.optim.Optimizer,
                   state: dict[str, Any]) -> dict[str, Any]:
    if _keyed_by_name(state):
        return state
    names = _param_names(model, optimizer)
    return {"state": {names[int(i)]: v for i, v in state.get("state", {}).items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]}
                             for g in state.get("param_groups", [])]}


def _optim_by_index(model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> dict[str, Any]:
    if not _keyed_by_name(state):
        return state
    index = {n: i for i, n in enumerate(_param_names(model, optimizer))}
    return {"state": {index[n]: v for n, v in state.get("state", {}).items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                             for g in state.get("param_groups", [])]}


def sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and optimizer state as this rank holds them (FSDP2: DTensor shards, no gather),
    keyed by parameter name: what a sharded checkpoint saves, and the targets it loads into."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    return get_model_state_dict(model), get_optimizer_state_dict(model, optimizer)


def load_sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                       model_state: dict[str, Any], optim_state: dict[str, Any]) -> None:
    """Put state shaped like :func:`sharded_state`'s back into the model and optimizer."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, model_state)
    set_optimizer_state_dict(model, optimizer, optim_state)
