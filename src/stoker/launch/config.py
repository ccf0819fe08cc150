"""Executor configs: WHERE a task runs, as typed, validated config nodes.

``executor=torchrun executor.nproc_per_node=2`` on the command line, a ``[my-cluster]``
profile in ``env.toml`` and ``Experiment(..., executor=...)`` all end up as one of these
Pydantic models, discriminated on ``kind``. ``extra="forbid"``: an unknown field is an
error with a "Did you mean" (NeMo-Run documents that and never implemented it).

Only pydantic is imported here: validating an executor must not cost a torch import.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stoker.errors import ConfigError, ConfigProblem

__all__ = [
    "DEFAULT_PASS_ENV", "DOCKER_PASS_ENV", "DetachedConfig", "DockerConfig", "ExecutorConfig",
    "KINDS", "LocalConfig", "SlurmConfig", "TorchrunConfig", "parse_executor_config",
    "validation_problems",
]

# Variables a job started on THIS machine keeps from the launcher's environment: what a
# Python process needs to start the same interpreter with the same packages and threads.
# Nothing else is copied (no tokens, no keys); name more with `env_vars` or `pass_env`.
DEFAULT_PASS_ENV: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ",
    "TMPDIR", "TERM", "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "PYTHONPATH",
    "PYTHONHASHSEED", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "STOKER_HOME", "STOKER_OUTPUTS", "STOKER_VERBOSE", "WANDB_MODE", "MLFLOW_TRACKING_URI",
)
# What a container keeps from the launcher's environment: only names whose values mean the
# same inside it (no host paths: the image has its own PATH, HOME and packages).
DOCKER_PASS_ENV: tuple[str, ...] = (
    "LANG", "LC_ALL", "TZ", "PYTHONHASHSEED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "STOKER_VERBOSE", "WANDB_MODE",
)

EnvVars = Union[list[str], dict[str, str]]


class _Executor(BaseModel):
    """Fields every executor has."""

    model_config = ConfigDict(extra="forbid")

    env_vars: EnvVars = Field(
        default_factory=dict,
        description="Environment of the job: a list of NAMES copied from the launcher's "
        "environment, or a NAME -> value table. Nothing else from your environment reaches "
        "a job; values of secret-looking names (token, key, password, secret) are masked "
        "in --dryrun output and the job store.",
    )

    def job_env(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """``env_vars`` resolved to values (names read from ``environ``; missing: skipped)."""
        environ = os.environ if environ is None else environ
        if isinstance(self.env_vars, dict):
            return {str(k): str(v) for k, v in self.env_vars.items()}
        return {k: environ[k] for k in self.env_vars if k in environ}


class _ProcessOnThisMachine(_Executor):
    """Executors that start a process of this interpreter on this machine."""

    pass_env: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PASS_ENV),
        description="Names kept from the launcher's environment so the job starts the same "
        "interpreter with the same packages (PATH, PYTHONPATH, VIRTUAL_ENV, STOKER_HOME, "
        "thread counts...). Secrets are never in the default list.",
    )
    cancel_grace_s: float = Field(
        60.0, ge=0,
        description="`stoker exp cancel` sends SIGTERM (the trainer saves a checkpoint and "
        "stops) and waits this long before SIGKILL.",
    )


class LocalConfig(_ProcessOnThisMachine):
    """In the terminal that typed it. `stoker train` runs in the current process, exactly as
    without an executor; experiment tasks run as child processes that end with it."""

    kind: Literal["local"] = Field("local", description="Executor kind (discriminator).")


class DetachedConfig(_ProcessOnThisMachine):
    """A background process of this interpreter in its own session: it outlives the
    terminal. Output goes to the job's log files; follow with `stoker exp logs ID -f`."""

    kind: Literal["detached"] = Field("detached", description="Executor kind (discriminator).")


class TorchrunConfig(_ProcessOnThisMachine):
    """`python -m torch.distributed.run` (torchrun) in the background, followed in the
    terminal unless --detach: the trainer's DDP/FSDP2 across `nproc_per_node` processes."""

    kind: Literal["torchrun"] = Field("torchrun", description="Executor kind (discriminator).")
    nproc_per_node: int = Field(1, ge=1, description="Processes on this machine (one per GPU, "
                                "or CPU processes with gloo).")
    nnodes: int = Field(1, ge=1, description="Machines taking part (each runs this command).")
    node_rank: int | None = Field(None, ge=0, description="This machine's rank when nnodes > 1 "
                                  "without a c10d rendezvous; None: assigned by rendezvous.")
    rdzv_backend: str = Field("c10d", description="Rendezvous backend (c10d, static, etcd).")
    rdzv_endpoint: str | None = Field(
        None, description="host:port of the rendezvous; None on one node: --standalone "
        "(a free local port).")
    rdzv_id: str | None = Field(None, description="Rendezvous id; None: the task's job id.")
    max_restarts: int = Field(0, ge=0, description="Restarts of the worker group on failure.")
    monitor_interval: float | None = Field(None, gt=0, description="torchrun's worker poll "
                                           "interval in seconds; None: torchrun's default.")

    @model_validator(mode="after")
    def _multi_node(self) -> TorchrunConfig:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("nnodes > 1 needs executor.rdzv_endpoint=HOST:PORT (the first "
                             "node's address)")
        return self


class SlurmConfig(_Executor):
    """An sbatch job on a Slurm cluster, submitted here or over SSH to a login node."""

    kind: Literal["slurm"] = Field("slurm", description="Executor kind (discriminator).")
    nodes: int = Field(1, ge=1, description="--nodes.")
    ntasks_per_node: int = Field(1, ge=1, description="--ntasks-per-node (torchrun runs one "
                                 "launcher per node and nproc_per_node workers under it).")
    nproc_per_node: int | None = Field(None, ge=1, description="Workers per node under "
                                       "torchrun; None: gpus_per_node, or 1 without GPUs.")
    gpus_per_node: int | None = Field(None, ge=0, description="--gpus-per-node.")
    cpus_per_task: int | None = Field(None, ge=1, description="--cpus-per-task.")
    mem: str | None = Field(None, description="--mem, e.g. 32G.")
    time: str | None = Field(None, description="--time, e.g. 04:00:00.")
    account: str | None = Field(None, description="--account.")
    partition: str | None = Field(None, description="--partition.")
    qos: str | None = Field(None, description="--qos.")
    constraint: str | None = Field(None, description="--constraint.")
    exclusive: bool = Field(False, description="--exclusive.")
    job_name: str | None = Field(None, description="--job-name; None: the task's name.")
    container_image: str | None = Field(None, description="Pyxis/enroot --container-image.")
    container_mounts: list[str] = Field(default_factory=list,
                                        description="--container-mounts SRC:DST entries.")
    setup_lines: list[str] = Field(default_factory=list, description="Shell lines put in the "
                                   "script before the command (module load, activate env).")
    signal: str | None = Field("USR1@90", description="--signal: the trainer checkpoints on "
                               "USR1 and the job requeues itself; None: no signal.")
    requeue: bool = Field(True, description="--requeue after preemption or the signal.")
    host: str | None = Field(None, description="Login node to submit through over SSH; None: "
                             "sbatch on this machine.")
    user: str | None = Field(None, description="SSH user on the login node.")
    identity: str | None = Field(None, description="SSH private key file.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    ssh_timeout_s: float = Field(20.0, gt=0, description="Give up on an SSH login node that "
                                 "does not answer within this many seconds.")
    ssh_options: list[str] = Field(default_factory=list, description="Extra `ssh -o` "
                                   "options, e.g. UserKnownHostsFile=~/.ssh/cluster_hosts.")
    remote_dir: str | None = Field(None, description="Job folders on the cluster's filesystem "
                                   "(SSH); None: the local job store (a shared filesystem).")
    python: str | None = Field(None, description="Python on the cluster; None: this "
                               "interpreter (sys.executable) when submitting locally.")


class DockerConfig(_Executor):
    """`docker run` of the job in a container, followed like the others (docs/docker.md)."""

    kind: Literal["docker"] = Field("docker", description="Executor kind (discriminator).")
    image: str = Field(description="Image to run (built or imported locally, or pulled by "
                       "docker as usual).")
    mounts: list[str] = Field(default_factory=list, description="SRC:DST[:ro] bind mounts "
                              "(data, caches). The job folder, the project (read-only), the "
                              "run directory and $STOKER_HOME are mounted already.")
    workdir: str | None = Field(None, description="Working directory in the container, for "
                                "code baked into the image (the project is then not mounted); "
                                "None: the project directory, mounted read-only at the same "
                                "path.")
    ship_code: bool = Field(False, description="Copy the project's code into the job folder "
                            "(git archive of HEAD plus uncommitted changes, recorded in "
                            "code.json) and run there instead of mounting the project: later "
                            "edits do not reach a running job.")
    mount_home: bool = Field(True, description="Mount $STOKER_HOME read-write at the same path "
                             "(artifact registry, built-in corpus cache) and set it in the "
                             "container.")
    gpus: str | int | None = Field(None, description="--gpus (all, a count, device=0,1).")
    shm_size: str | None = Field(None, description="--shm-size, e.g. 8g (DataLoader workers).")
    user: str | None = Field(None, description="--user uid:gid; None: the image's user. Files "
                             "the job writes through mounts belong to this user.")
    network: str | None = Field(None, description="--network (host, none, a network name); "
                                "None: docker's default.")
    init: bool = Field(True, description="--init: a tiny init as PID 1 forwards `docker stop`'s "
                       "SIGTERM to the job and reaps its children.")
    run_args: list[str] = Field(default_factory=list, description="More `docker run` options, "
                                "as separate words (--ipc=host, --ulimit=memlock=-1).")
    pass_env: list[str] = Field(
        default_factory=lambda: list(DOCKER_PASS_ENV),
        description="Names kept from the launcher's environment that mean the same inside a "
        "container (seed, thread counts, time zone). Host paths such as PATH or PYTHONPATH are "
        "not among them: name them in env_vars when the container mirrors the host's paths.")
    cancel_grace_s: float = Field(
        60.0, ge=0,
        description="`stoker exp cancel` runs `docker stop` with this grace period: SIGTERM "
        "(the trainer saves a checkpoint and stops), SIGKILL after it.")
    python: str | None = Field(None, description="Python in the container; None: this "
                               "interpreter's path (mounted from the host).")

ExecutorConfig = Annotated[
    Union[LocalConfig, DetachedConfig, TorchrunConfig, SlurmConfig, DockerConfig],
    Field(discriminator="kind"),
]
_BY_KIND: dict[str, type[_Executor]] = {
    "local": LocalConfig, "detached": DetachedConfig, "torchrun": TorchrunConfig,
    "slurm": SlurmConfig, "docker": DockerConfig,
}
KINDS: tuple[str, ...] = tuple(_BY_KIND)


def config_class(kind: str) -> type[_Executor]:
    return _BY_KIND[kind]


def parse_executor_config(data: dict[str, Any], *, where: str = "executor",
                          file: str | None = None) -> Any:
    """Validate ``data`` (with a ``kind``) into its executor config; every problem at once,
    each with its dotted path under ``where`` and a "Did you mean" for unknown fields."""
    from stoker.config.targets import suggest

    kind = data.get("kind")
    if kind not in _BY_KIND:
        raise ConfigError(problems=[ConfigProblem(
            f"{where}.kind" if "kind" in data else where,
            f"unknown executor {kind!r}; valid ones: {', '.join(KINDS)}{suggest(str(kind), KINDS)}",
            file)])
    cls = _BY_KIND[kind]
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems=validation_problems(
            exc, where=where, file=file, owner=f"{where} ({kind} executor)",
            fields=list(cls.model_fields))) from None


def validation_problems(exc: ValidationError, *, where: str = "", file: str | None = None,
                        owner: str | None = None, fields: Sequence[str] = (),
                        missing: str = "missing required value; set {loc}=...",
                        ) -> list[ConfigProblem]:
    """``exc``'s errors as problems, each at its dotted path under ``where`` (``file``: the
    file that held the data): an unknown key with a "Did you mean" among ``fields``, a
    missing one with ``missing`` (``{loc}``: its path), any other with the value found.

    The one translation of Pydantic's errors for launch: executor configs and the job
    store's records (:mod:`stoker.launch.records`) read the same way.
    """
    from stoker.config.targets import suggest

    problems = []
    for err in exc.errors():
        loc = ".".join([*([where] if where else []), *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            msg = f"Unknown key '{key}' in {owner or where}.{suggest(key, list(fields))}"
        elif err["type"] == "missing":
            msg = missing.format(loc=loc)
        else:
            got = err.get("input")
            msg = err["msg"] + (f" (got {got!r})" if not isinstance(got, dict) else "")
        problems.append(ConfigProblem(loc, msg, file))
    return problems
