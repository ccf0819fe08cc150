"""``executor=torchrun``: ``python -m torch.distributed.run`` in front of the task.

The trainer already speaks torchrun (RANK/WORLD_SIZE/LOCAL_RANK -> DDP or FSDP2), so this
only builds the launcher's arguments; the job runs detached like ``executor=detached`` and
the CLI follows it unless ``--detach``. torch is not imported here: submitting costs no
torch import.
"""
from __future__ import annotations

import os

from stoker.errors import UserError
from stoker.launch.cores import local_cpus
from stoker.launch.executors.process import ProcessExecutor
from stoker.launch.task import Task


class TorchrunExecutor(ProcessExecutor):
    kind = "torchrun"
    outlives_launcher = False
    new_session = True
    where = "torchrun in the background (its own session)"

    def check(self, task: Task) -> None:
        n, cpus = self.config.nproc_per_node, local_cpus()
        gpus = _visible_gpus()
        most = max(cpus, gpus)
        if n > most:
            have = f"{cpus} CPU{'s' if cpus != 1 else ''}" + (f" and {gpus} GPUs" if gpus else "")
            raise UserError(f"executor.nproc_per_node={n} is more than this machine has "
                            f"({have}); use executor.nproc_per_node={most} or fewer")

    def program(self, task: Task) -> list[str]:
        c = self.config
        args = ["-m", "torch.distributed.run", "--nproc_per_node", str(c.nproc_per_node),
                "--nnodes", str(c.nnodes)]
        if c.rdzv_endpoint is None:
            args.append("--standalone")
        else:
            args += ["--rdzv_backend", c.rdzv_backend, "--rdzv_endpoint", c.rdzv_endpoint,
                     "--rdzv_id", c.rdzv_id or task.job_id.replace("/", "-")]
        if c.node_rank is not None:
            args += ["--node_rank", str(c.node_rank)]
        if c.max_restarts:
            args += ["--max_restarts", str(c.max_restarts)]
        if c.monitor_interval is not None:
            args += ["--monitor_interval", str(c.monitor_interval)]
        return [*args, *task.program]


def _visible_gpus() -> int:
    """NVIDIA GPUs this process may use, without importing torch (0 without a driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return sum(1 for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit())
    except OSError:
        return 0
