"""Executors by kind, imported only when used (a Slurm or Docker backend costs nothing
until a job needs it)."""
from __future__ import annotations

import importlib
from typing import Any

from stoker.launch.executors.base import Executor, JobState, JobStatus

__all__ = ["EXECUTORS", "Executor", "JobState", "JobStatus", "get_executor"]

EXECUTORS: dict[str, str] = {
    "local": "stoker.launch.executors.local:LocalExecutor",
    "detached": "stoker.launch.executors.detached:DetachedExecutor",
    "torchrun": "stoker.launch.executors.torchrun:TorchrunExecutor",
    "slurm": "stoker.launch.executors.slurm:SlurmExecutor",
    "docker": "stoker.launch.executors.docker:DockerExecutor",
}


def get_executor(config: Any) -> Executor:
    """The executor for ``config`` (an executor config model, or its dict with ``kind``)."""
    from stoker.errors import UserError

    if isinstance(config, dict):
        from stoker.launch.config import parse_executor_config

        config = parse_executor_config(config)
    kind = config.kind
    spec = EXECUTORS.get(kind)
    if spec is None:
        raise UserError(f"no executor of kind {kind!r}; known: {', '.join(EXECUTORS)}")
    module, _, cls = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise UserError(f"the {kind} executor is not available in this version of stoker "
                            f"({module} is missing)") from None
        raise
    return getattr(mod, cls)(config)
