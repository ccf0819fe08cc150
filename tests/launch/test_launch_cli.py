"""Launching through the real CLI: a detached training that outlives its launcher, followed,
cancelled and rerun; an entrypoint script launched with its exported config; exit codes;
and bad input (exit 2, nothing submitted)."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import psutil
import pytest

from tests.launch.cli_helpers import experiments, launched_id, stoker, wait_for
from train_helpers import read_metrics, tiny_overrides

pytestmark = pytest.mark.integration

SLOW_CALLBACK = '''
import time
from stoker.train.callbacks import Callback


class Slow(Callback):
    """Makes a tiny training last long enough to be followed and cancelled."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds

    def on_step_end(self, trainer, step, metrics):
        time.sleep(self.seconds)
'''


def test_detached_training_outlives_its_launcher_is_followed_cancelled_and_rerun(
        tiny_data: Path, project: Path, env: dict[str, str]) -> None:
    (project / "slowcb.py").write_text(SLOW_CALLBACK)
    env = {**env, "PYTHONPATH": os.pathsep.join([str(project), env["PYTHONPATH"]])}
    out = project / "run"
    train = ["train", "gpt-char", *tiny_overrides(tiny_data, out, "trainer.max_steps=60"),
             "+callbacks.slow={_target_:slowcb.Slow,seconds:0.1}"]
    dry = stoker(*train, "executor=detached", "--dryrun", cwd=project, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "-m stoker train" in dry.stdout and "config.yaml --yes" in dry.stdout
    assert "nothing was submitted" in dry.stdout and experiments(env) == []

    launch = stoker(*train, "executor=detached", "--name", "tiny", "--yes", cwd=project, env=env)
    assert launch.returncode == 0, launch.stderr
    exp_id = launched_id(launch)
    assert exp_id.startswith("tiny-")
    job = Path(env["STOKER_HOME"]) / "experiments" / exp_id / "train"
    handle = json.loads((job / "handle.json").read_text())
    # the launcher has exited; the job runs on in its own session
    proc = psutil.Process(handle["pid"])
    assert proc.is_running() and os.getsid(handle["pid"]) != os.getsid(0)
    # the launcher's own interpreter (the venv's), never `python` from PATH
    assert Path(proc.cmdline()[0]).parent == Path(sys.executable).parent
    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert status.returncode == 0 and re.search(r"train\s+RUNNING", status.stdout), status.stdout
    assert f"run directory {out}" in status.stdout
    cfg = (job / "config.yaml").read_text()
    assert "executor" not in cfg and "slowcb.Slow" in cfg  # the job will not launch again

    wait_for(lambda: (out / "metrics.jsonl").exists() and any(
        r.get("step", 0) >= 3 for r in read_metrics(out)), what="step 3")
    cancel = stoker("exp", "cancel", exp_id, cwd=project, env=env)
    assert cancel.returncode == 0 and "train: CANCELLED" in cancel.stdout, cancel.stdout
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    stopped = max(r["step"] for r in read_metrics(out) if "loss" in r)
    assert stopped < 60
    assert "SIGTERM received: saved checkpoint" in (job / "logs" / "stderr.log").read_text()
    assert (out / "checkpoints" / f"step-{stopped:08d}").is_dir()
    logs = stoker("exp", "logs", exp_id, cwd=project, env=env)
    assert logs.returncode == 0 and "step 1/60" in logs.stderr

    rerun = stoker("exp", "rerun", exp_id, cwd=project, env=env)
    assert rerun.returncode == 0, rerun.stderr
    new_id = launched_id(rerun)
    follow = stoker("exp", "logs", new_id, "--follow", cwd=project, env=env)
    assert follow.returncode == 0, follow.stderr[-2000:]
    assert f"resuming in {out}" in follow.stderr and "finished at step 60" in follow.stdout
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == list(range(1, 61))  # the loss curve continues where it stopped
    listing = stoker("exp", "list", cwd=project, env=env)
    assert exp_id in listing.stdout and new_id in listing.stdout


ENTRYPOINT = '''
import stoker


@stoker.entrypoint
def work(n: int = 1, fail: bool = False):
    """Print n; fail on request."""
    print("n is", n, flush=True)
    if fail:
        raise RuntimeError("asked to fail")


if __name__ == "__main__":
    stoker.main(work, default_executor="detached")
'''


def test_entrypoint_script_launches_itself_with_its_exported_config(
        project: Path, env: dict[str, str]) -> None:
    script = project / "ep.py"
    script.write_text(ENTRYPOINT)
    dry = stoker(str(script), "n=5", "--dryrun", cwd=project, env=env, python=True)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"ep\.py -c \S+/work/config\.yaml --yes executor=local", dry.stdout)
    assert experiments(env) == []

    ok = stoker(str(script), "n=5", cwd=project, env=env, python=True)
    assert ok.returncode == 0, ok.stderr
    exp_id = launched_id(ok)
    follow = stoker("exp", "logs", exp_id, "-f", cwd=project, env=env)
    assert follow.returncode == 0 and follow.stdout == "n is 5\n", follow
    job = Path(env["STOKER_HOME"]) / "experiments" / exp_id / "work"
    assert "n: 5" in (job / "config.yaml").read_text()
    assert "executor=local" in (job / "command.txt").read_text()

    bad = stoker(str(script), "fail=true", cwd=project, env=env, python=True)
    failed_id = launched_id(bad)
    follow = stoker("exp", "logs", failed_id, "--follow", cwd=project, env=env)
    assert follow.returncode == 1 and "asked to fail" in follow.stderr
    status = stoker("exp", "status", failed_id, cwd=project, env=env)
    assert status.returncode == 1 and re.search(r"work\s+FAILED\s+1", status.stdout)

    here = stoker(str(script), "n=7", "executor=local", cwd=project, env=env, python=True)
    assert here.returncode == 0 and here.stdout == "n is 7\n"  # in this process, as before

    unknown = stoker("exp", "status", "nosuch", cwd=project, env=env)
    assert unknown.returncode == 2 and "no experiment 'nosuch'" in unknown.stderr
    assert exp_id in unknown.stderr and failed_id in unknown.stderr  # recent ones listed
    assert "Traceback" not in unknown.stderr


def test_submitting_imports_neither_torch_nor_hydra(project: Path, env: dict[str, str],
                                                   tiny_data: Path) -> None:
    """Submission stays light: torch loads in the job, and path overrides (data.path=/...,
    output_dir=/...) are read without Hydra's ANTLR parser."""
    out = project / "run"
    # every override in the plain forms (a list such as loggers=[jsonl] is Hydra's to read)
    overrides = [o for o in tiny_overrides(tiny_data, out, "trainer.max_steps=2")
                 if not o.startswith("loggers=")]
    sub = stoker("-X", "importtime", "-m", "stoker", "train", "gpt-char", *overrides,
                 "executor=detached", "--yes", cwd=project, env=env, python=True)
    assert sub.returncode == 0, sub.stderr
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in sub.stderr.splitlines() if line.startswith("import time:")}
    assert "stoker" in imported  # the probe works
    assert not imported & {"torch", "hydra", "numpy"}, sorted(imported & {"torch", "hydra", "numpy"})
    follow = stoker("exp", "logs", launched_id(sub), "--follow", cwd=project, env=env)
    assert follow.returncode == 0, follow.stderr
    assert [r["step"] for r in read_metrics(out) if "loss" in r][-1] == 2  # the job ran


BAD_TOML = """
[typo]
executor = "slurm"
partiton = "gpu"

[wrongtype]
executor = "slurm"
nodes = "two"

[loop-a]
extends = "loop-b"
executor = "slurm"

[loop-b]
extends = "loop-a"
"""


@pytest.mark.parametrize("args,expected", [
    (["executor=nope"], r"unknown executor or profile 'nope'. Executors: local, detached, "
                        r"torchrun, slurm, docker; profiles: loop-a, loop-b, typo, wrongtype"),
    (["executor=typo"], r"Unknown key 'partiton' in profile 'typo' \(slurm executor\)\. "
                        r"Did you mean 'partition'\?"),
    (["executor=wrongtype"], r"profile 'wrongtype'.nodes .*env.toml\): Input should be a "
                             r"valid integer"),
    (["executor=loop-a"], r"cycle: loop-a -> loop-b -> loop-a"),
    (["executor=slurm", "executor.nodes=0"], r"executor.nodes: Input should be greater than "
                                             r"or equal to 1"),
    (["executor=torchrun", "executor.nproc_per_node=64"], r"executor.nproc_per_node=64 is more "
                                                          r"than this machine has"),
    (["executor=torchrun", "executor.nprocs_per_node=2"], r"Did you mean 'nproc_per_node'"),
    (["executor=local", "--detach"], r"use executor=detached"),
])
def test_bad_launch_input_exits_2_and_submits_nothing(args: list[str], expected: str,
                                                      tiny_data: Path, project: Path,
                                                      env: dict[str, str]) -> None:
    (project / "env.toml").write_text(BAD_TOML)
    proc = stoker("train", "gpt-char", *tiny_overrides(tiny_data, project / "run"), *args,
                  "--yes", cwd=project, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(expected, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert experiments(env) == [] and not (project / "run").exists()
