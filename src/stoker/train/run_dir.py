"""The run directory, the unit of reproducibility (docs/ARCHITECTURE.md).

``outputs/<name>/<run_id>/`` holds ``config.yaml`` (resolved, re-runnable as is),
``command.txt``, ``env.json`` (versions, git commit and dirty flag), ``metrics.jsonl``,
``tensorboard/``, ``checkpoints/step-NNNNNNNN/`` and ``logs/``. This module decides which
directory a run uses (fresh, resumed, or the newest of its name) and writes the
description files atomically.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoker.atomic import atomic_write_text, check_dir_path
from stoker.config.secrets import mask_argv
from stoker.errors import UserError, write_failure
from stoker.train.checkpoint.layout import CHECKPOINTS_DIR, has_step_dirs, is_step_dir

__all__ = [
    "RunPlan",
    "atomic_write_text",
    "attach_log_file",
    "config_yaml",
    "detach_log_file",
    "opening_outputs",
    "plan_run_dir",
    "write_run_files",
]

METRICS = "metrics.jsonl"


@dataclass(frozen=True)
class RunPlan:
    """Which directory to use and where to resume from (None: fresh start)."""

    run_dir: Path
    resume_from: Path | None  # a checkpoint step dir or a checkpoints root (latest inside)
    note: str  # one line for the user: "new run", "resuming ...", ...
    auto_named: bool = False  # a fresh directory stoker named: if taken, pick another name


def _timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def outputs_root() -> Path:
    return Path(os.environ.get("STOKER_OUTPUTS", "outputs"))


def _has_checkpoint(run_dir: Path) -> bool:
    return has_step_dirs(run_dir / CHECKPOINTS_DIR)


def _has_run(run_dir: Path) -> bool:
    return (run_dir / "config.yaml").exists() or _has_checkpoint(run_dir)


def _fresh_dir(base: Path) -> Path:
    """A directory that does not exist yet: base, or base with a numeric suffix."""
    cand = base
    n = 1
    while cand.exists():
        n += 1
        cand = base.with_name(f"{base.name}-{n}")
    return cand


def plan_run_dir(*, name: str, output_dir: str | None, resume: str) -> RunPlan:
    """Apply the resume rules: auto (default), never, latest, or a PATH."""
    resume = resume or "auto"
    if resume not in ("auto", "never", "latest"):
        path = Path(resume).expanduser()
        if not path.exists():
            raise UserError(
                f"resume={resume}: no such checkpoint or run directory; use resume=auto, "
                "resume=latest, resume=never or the path of a checkpoints/step-* directory"
            )
        if (path / CHECKPOINTS_DIR).is_dir():  # a run directory: its latest checkpoint
            ckpt_root: Path = path / CHECKPOINTS_DIR
            owner = path
        elif is_step_dir(path):
            ckpt_root = path
            owner = path.parent.parent
        else:
            ckpt_root = path
            owner = path.parent
        run_dir = Path(output_dir) if output_dir else owner
        check_dir_path(run_dir, "output_dir")
        return RunPlan(run_dir, ckpt_root, f"resuming from {path}")

    if output_dir:
        run_dir = Path(output_dir)
        check_dir_path(run_dir, "output_dir")
        if resume == "never":
            if _has_run(run_dir):
                fresh = _fresh_dir(run_dir.with_name(f"{run_dir.name}-{_timestamp()}"))
                return RunPlan(fresh, None, f"resume=never: {run_dir} holds a run; "
                               f"starting fresh in {fresh}", auto_named=True)
            return RunPlan(run_dir, None, "new run")
        if _has_checkpoint(run_dir):
            return RunPlan(run_dir, run_dir / CHECKPOINTS_DIR, f"resuming in {run_dir}")
        return RunPlan(run_dir, None, "new run")

    base = outputs_root() / name
    check_dir_path(base, "the outputs folder")
    if resume == "latest":
        runs = sorted(
            (p for p in base.glob("*") if p.is_dir() and _has_checkpoint(p)),
            key=lambda p: (p.stat().st_mtime, p.name),
        ) if base.is_dir() else []
        if runs:
            return RunPlan(runs[-1], runs[-1] / CHECKPOINTS_DIR, f"resuming newest run {runs[-1]}")
        raise UserError(
            f"resume=latest: no run of '{name}' with a checkpoint under {base}; "
            "start one first (drop resume=latest) or set output_dir=..."
        )
    return RunPlan(_fresh_dir(base / _timestamp()), None, "new run", auto_named=True)


def environment_info(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Versions that decide whether a run can be reproduced bit for bit.

    ``code`` is the user's code (:mod:`stoker.artifacts.code_version`: the repositories of
    the working directory and of the modules ``config`` loads, content hashes of their
    files outside any repository), ``git`` the main one of those repositories (all None
    when there is none: stoker's own checkout is never "the code"), and ``stoker`` is
    stoker's own version and checkout."""
    import importlib.metadata as md

    import torch

    from stoker.artifacts.code_version import code_info, primary_git, stoker_info
    from stoker.artifacts.machine import machine_fingerprint

    def ver(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    code = code_info(Path.cwd(), config)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": {p: ver(p) for p in ("stoker", "torch", "numpy", "omegaconf", "pydantic",
                                          "tokenizers", "safetensors")},
        "cuda": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git": primary_git(code, Path.cwd()),
        "code": code,
        "stoker": stoker_info(),
        "machine": machine_fingerprint(),
        "hostname": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run_files(run_dir: Path, *, config_yaml: str, argv: list[str]) -> None:
    """config.yaml, command.txt, env.json and the empty logs/ folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config_yaml)
    atomic_write_text(run_dir / "command.txt", shlex.join(mask_argv(argv)) + "\n")
    import yaml

    record = yaml.safe_load(config_yaml)  # the run's record: which user modules it loads
    env = environment_info(record if isinstance(record, dict) else None)
    atomic_write_text(run_dir / "env.json", json.dumps(env, indent=2) + "\n")


def config_yaml(config: dict[str, Any], run_dir: Path) -> str:
    """``config.yaml`` of a run: its config, pointed at this directory, re-runnable as is.

    ``config`` is the run's record (:func:`stoker.config.export.to_record`): values from the
    environment stay ``${oc.env:VAR}``, so a secret never lands here; re-running resolves them.
    """
    import yaml

    cfg = dict(config)
    cfg["output_dir"] = str(run_dir.resolve())
    cfg["resume"] = "auto"
    header = (f"# Resolved config of this run; re-run or resume it with:\n"
              f"#   stoker train {run_dir / 'config.yaml'} --yes\n")
    return header + yaml.safe_dump(cfg, sort_keys=False)


def attach_log_file(logger: logging.Logger, path: Path) -> logging.Handler:
    """Copy ``logger``'s INFO notes (resuming, checkpoints) into the run's ``logs/`` file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def detach_log_file(logger: logging.Logger, handler: logging.Handler | None) -> None:
    """Undo :func:`attach_log_file` (None: nothing was attached)."""
    if handler is not None:
        logger.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def opening_outputs(run_dir: Path, *, created: bool | None = None) -> Iterator[None]:
    """Around writing a run directory's first files: an ``OSError`` (a full disk, a file in
    the way) becomes a typed error (exit 1, or 2 for a bad path) and a directory this run
    created (``created``; by default, when it does not exist yet) is removed again, so a
    failed start leaves nothing half-written behind."""
    if created is None:
        created = not run_dir.exists()
    try:
        yield
    except OSError as exc:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise write_failure(
            exc, f"the run directory {run_dir}",
            "Free space on that disk, or point output_dir at another one; nothing of this "
            "run was kept" + ("." if created else " beyond what the directory held before.")
        ) from exc
