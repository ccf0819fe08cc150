"""Several jobs on one machine share its cores.

Two trainings that each start one intra-op thread per core on the same 2 cores do not run
at half speed each: OpenMP's threads spin while they wait for each other and the steps get
~10x slower. So when an experiment runs tasks at the same time on this machine (a sweep
with ``--parallel N``, ``mode="parallel"``, independent tasks of a graph), each task gets
``cores / tasks at once`` threads (at least 1; a torchrun task divides its share among its
processes):

* a training's ``trainer.num_threads`` is set in its config (unless the task sets it), so
  the run's ``config.yaml`` records it and a resume uses the same count (results on CPU
  depend on the thread count);
* every task's environment gets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (scripts too).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

__all__ = ["HOST_KINDS", "concurrency", "local_cpus", "share_cores", "thread_env"]

HOST_KINDS = ("local", "detached", "torchrun")
"""Executors whose jobs run on this machine."""

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def local_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_env(threads: int | None) -> dict[str, str]:
    """The variables that cap a job's threads (empty when it has the machine to itself)."""
    return {} if not threads else {k: str(threads) for k in THREAD_VARS}


def concurrency(deps: dict[str, Sequence[str]], mode: str, max_parallel: int | None) -> int:
    """How many of these tasks may run at once: 1 in sequence, all in parallel, the widest
    level of the dependency graph otherwise; never more than ``max_parallel``."""
    if not deps:
        return 0
    if mode == "sequential":
        width = 1
    elif mode == "parallel":
        width = len(deps)
    else:
        level: dict[str, int] = {}

        def depth(n: str) -> int:
            if n not in level:
                level[n] = 0  # cycles are refused before; this only guards recursion
                level[n] = 1 + max((depth(d) for d in deps[n] if d in deps), default=-1)
            return level[n]

        counts: dict[int, int] = {}
        for n in deps:
            counts[depth(n)] = counts.get(depth(n), 0) + 1
        width = max(counts.values())
    return min(width, max_parallel) if max_parallel else width


def share_cores(specs: Sequence[Any], mode: str, max_parallel: int | None,
                cores: int | None = None) -> None:
    """Give each task on this machine its share of the cores (see the module docstring).

    ``specs``: the experiment's task specs (``executor``, ``kind``, ``cfg``, ``threads``,
    ``depends_on``); changed in place. A spec whose ``threads`` is already set (a rerun)
    keeps it. Nothing changes when at most one task runs at a time.
    """
    host = {s.name: s for s in specs if getattr(s.executor, "kind", None) in HOST_KINDS}
    at_once = concurrency({n: s.depends_on for n, s in host.items()}, mode, max_parallel)
    if at_once < 2:
        return
    cores = cores or local_cpus()
    for s in host.values():
        if s.threads:
            continue
        procs = int(getattr(s.executor, "nproc_per_node", 1) or 1)
        share = max(1, cores // (at_once * procs))
        own = _own_threads(s.cfg) if s.kind == "train" else None
        if own:
            s.threads = own
            continue
        s.threads = share
        if s.kind == "train" and s.cfg is not None and not isinstance(s.cfg, (str, bytes)) \
                and hasattr(s.cfg, "keys"):
            from omegaconf import OmegaConf

            s.cfg = copy.deepcopy(s.cfg)  # the experiment's own spec stays as added
            OmegaConf.update(s.cfg, "trainer.num_threads", share, force_add=True)


def _own_threads(cfg: Any) -> int | None:
    """The ``trainer.num_threads`` a training config sets itself, if any."""
    if cfg is None or not hasattr(cfg, "keys"):
        return None
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, "trainer.num_threads", default=None)
    return int(value) if value else None
