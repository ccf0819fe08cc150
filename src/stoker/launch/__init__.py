"""stoker.launch: WHERE a config runs (DESIGN.md section 5).

Executors (local, detached, torchrun; Slurm and Docker by name), executor configs and
``env.toml`` profiles, experiments (task graphs) and the job store under
``$STOKER_HOME/experiments``. Names resolve lazily: nothing heavy (no torch, no pydantic)
is imported until used.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Experiment": "stoker.launch.experiment",
    "Task": "stoker.launch.task",
    "JobStore": "stoker.launch.store",
    "get_executor": "stoker.launch.executors",
    "Executor": "stoker.launch.executors.base",
    "JobState": "stoker.launch.executors.base",
    "JobStatus": "stoker.launch.executors.base",
    "select_executor": "stoker.launch.profiles",
    "LocalConfig": "stoker.launch.config",
    "DetachedConfig": "stoker.launch.config",
    "TorchrunConfig": "stoker.launch.config",
    "SlurmConfig": "stoker.launch.config",
    "DockerConfig": "stoker.launch.config",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stoker.launch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
