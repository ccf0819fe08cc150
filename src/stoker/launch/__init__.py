"""stoker.launch: WHERE a config runs (DESIGN.md section 5).

Executors (local, detached, torchrun; Slurm and Docker by name), executor configs and
``env.toml`` profiles, experiments (task graphs) and the job store under
``$STOKER_HOME/experiments``. Names resolve lazily: nothing heavy (no torch, no pydantic)
is imported until used.
"""
from __future__ import annotations

from stoker._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
