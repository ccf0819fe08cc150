"""Sweeps (-m), parallel tasks sharing the cores, --repl and shell completion, through the
real CLI: a sweep is ONE experiment with a task and a run directory per point, on the local
executor, detached in parallel, and as one job array on the real Slurm cluster."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests._shared.engines import SlurmCluster
from tests.launch.cli_helpers import STOKER, experiments, launched_id, stoker, wait_for
from train_helpers import read_metrics, tiny_overrides

pytestmark = pytest.mark.integration


def _store(env: dict[str, str], exp_id: str) -> Path:
    return Path(env["STOKER_HOME"]) / "experiments" / exp_id


def _tasks(env: dict[str, str], exp_id: str) -> list[dict]:
    root = _store(env, exp_id)
    meta = json.loads((root / "experiment.json").read_text())
    return [json.loads((root / folder / "task.json").read_text()) for folder in meta["tasks"]]


def _steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run) if "loss" in r]


def test_a_three_point_sweep_runs_each_point_in_its_own_run_directory(
        tiny_data: Path, project: Path, env: dict[str, str]) -> None:
    out = project / "sweep"
    args = ["train", "gpt-char", *tiny_overrides(tiny_data, out, "trainer.max_steps=3"),
            "seed=range(1,4)", "-m"]
    dry = stoker(*args, "--dryrun", cwd=project, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "sweep: 3 points over seed" in dry.stdout
    assert re.search(r"\[2\] seed=3\s+-> \S+/sweep/2_seed-3", dry.stdout), dry.stdout
    assert dry.stdout.count("-m stoker train") == 3 and "nothing was submitted" in dry.stdout
    assert experiments(env) == [] and not out.exists()

    run = stoker(*args, "--yes", cwd=project, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    exp_id = launched_id(run)
    assert experiments(env) == [exp_id]  # ONE experiment
    tasks = _tasks(env, exp_id)
    assert [t["name"] for t in tasks] == ["seed=1", "seed=2", "seed=3"]
    assert [t["point"] for t in tasks] == [{"seed": "1"}, {"seed": "2"}, {"seed": "3"}]
    dirs = sorted(p.name for p in out.iterdir())
    assert dirs == ["0_seed-1", "1_seed-2", "2_seed-3"]
    for i, t in enumerate(tasks):
        run_dir = out / dirs[i]
        assert t["run_dir"] == str(run_dir) and t["threads"] is None  # one at a time
        assert _steps(run_dir) == [1, 2, 3]
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == i + 1
    losses = [read_metrics(out / d)[0]["loss"] for d in dirs]
    assert len(set(losses)) == 3  # three seeds, three different runs
    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert status.returncode == 0 and "sweep of 3 points over seed" in status.stdout
    assert len(re.findall(r"^seed=\d\s+SUCCEEDED\s+0\s+local", status.stdout, re.M)) == 3


def test_a_2x2_detached_sweep_runs_in_parallel_sharing_the_cores(
        tiny_data: Path, project: Path, env: dict[str, str]) -> None:
    out = project / "grid"
    launch = stoker("train", "gpt-char", *tiny_overrides(tiny_data, out, "trainer.max_steps=4"),
                    "trainer.num_threads=null", "optim.lr=1e-3,3e-3", "seed=1,2", "-m",
                    "--parallel", "2", "executor=detached", "--yes", cwd=project, env=env)
    assert launch.returncode == 0, launch.stderr
    exp_id = launched_id(launch)
    root = _store(env, exp_id)
    wait_for(lambda: all((root / t["folder"] / "exit.json").is_file()
                         for t in _tasks(env, exp_id)), timeout=400, what="4 points")
    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert status.returncode == 0, status.stdout
    rows = re.findall(r"^(optim\.lr=\S+,seed=\d)\s+SUCCEEDED\s+0\s+detached", status.stdout, re.M)
    assert rows == ["optim.lr=0.001,seed=1", "optim.lr=0.001,seed=2", "optim.lr=0.003,seed=1",
                    "optim.lr=0.003,seed=2"], status.stdout
    assert "at most 2 at once" in status.stdout
    # two at a time: every task overlapped another one, never three at once
    spans = []
    for t in _tasks(env, exp_id):
        ended = json.loads((root / t["folder"] / "exit.json").read_text())
        spans.append((ended["started"], ended["ended"]))
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        run_cfg = yaml.safe_load((Path(t["run_dir"]) / "config.yaml").read_text())
        assert t["threads"] == share and run_cfg["trainer"]["num_threads"] == share
        assert "OMP_NUM_THREADS=" + str(share) in (root / t["folder"] / "command.txt").read_text()
    at_once = [sum(1 for a, b in spans if a <= s < b) for s, _ in spans]
    assert max(at_once) == 2, spans


def test_bad_sweep_input_exits_2_and_submits_nothing(tiny_data: Path, project: Path,
                                                     env: dict[str, str]) -> None:
    base = ["train", "gpt-char", *tiny_overrides(tiny_data, project / "run")]
    no_m = stoker(*base, "seed=1,2", "--yes", cwd=project, env=env)
    assert no_m.returncode == 2 and "add -m (--multirun)" in no_m.stderr, no_m.stderr
    no_sweep = stoker(*base, "seed=1", "-m", "--yes", cwd=project, env=env)
    assert no_sweep.returncode == 2, no_sweep.stderr
    assert "no override gives a key several values" in no_sweep.stderr
    bad_point = stoker(*base, "optim.lr=1e-3,fast,3e-3", "seed=1,2", "-m", "--yes",
                       cwd=project, env=env)
    assert bad_point.returncode == 2, bad_point.stderr
    assert re.search(r"point 2 \(optim.lr=fast,seed=1\) optim.lr.*'fast'", bad_point.stderr)
    assert "point 3 (optim.lr=fast,seed=2)" in bad_point.stderr  # every point is checked
    assert "point 0" not in bad_point.stderr
    parallel = stoker(*base, "--parallel", "2", "--yes", cwd=project, env=env)
    assert parallel.returncode == 2 and "add -m" in parallel.stderr
    for p in (no_m, no_sweep, bad_point, parallel):
        assert "Traceback" not in p.stderr
    assert experiments(env) == [] and not (project / "run").exists()


SCRIPT = '''
import stoker


@stoker.entrypoint
def work(n: int = 1, output_dir: str = "out"):
    """Write n into its output directory."""
    import pathlib
    pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)
    pathlib.Path(output_dir, "n.txt").write_text(str(n))
    print("n is", n, flush=True)


if __name__ == "__main__":
    stoker.main(work)
'''


def test_an_entrypoint_script_sweeps_and_opens_a_repl(project: Path, env: dict[str, str]
                                                      ) -> None:
    script = project / "work.py"
    script.write_text(SCRIPT)
    run = stoker(str(script), "n=2,5", "output_dir=res", "-m", "--yes", cwd=project, env=env,
                 python=True)
    assert run.returncode == 0, run.stderr
    exp_id = launched_id(run)
    assert sorted(p.name for p in (project / "res").iterdir()) == ["0_n-2", "1_n-5"]
    assert (project / "res" / "1_n-5" / "n.txt").read_text() == "5"
    tasks = _tasks(env, exp_id)
    assert [t["name"] for t in tasks] == ["n=2", "n=5"]
    assert tasks[1]["run_dir"] == str(project / "res" / "1_n-5")
    assert (_store(env, exp_id) / tasks[0]["folder"] / "logs" / "stdout.log").read_text() \
        == "n is 2\n"

    import subprocess

    repl = subprocess.run([sys.executable, str(script), "n=7", "--repl"], cwd=project, env=env,
                          input="print('got', kwargs['n'], cfg.output_dir)\n", text=True,
                          capture_output=True, timeout=120)
    assert repl.returncode == 0, repl.stderr
    assert "got 7 out" in repl.stdout
    assert "kwargs" in repl.stderr and "fn(**kwargs) runs work" in repl.stderr  # the banner
    assert not (project / "out").exists()  # nothing ran


def test_train_repl_holds_the_config_and_the_built_objects(
        tiny_data: Path, project: Path, env: dict[str, str]) -> None:
    import subprocess

    out = project / "never"
    commands = ("print('lr', recipe.optim['lr'], cfg.model.dim)\n"
                "print('model', type(model).__name__, sum(p.numel() for p in model.parameters()) > 0)\n"
                "print('opt', type(optimizer).__name__, data.vocab_size > 0)\n")
    repl = subprocess.run([str(Path(sys.executable).with_name("stoker")), "train", "gpt-char",
                           *tiny_overrides(tiny_data, out), "optim.lr=0.02", "--repl"],
                          cwd=project, env=env, input=commands, text=True, capture_output=True,
                          timeout=200)
    assert repl.returncode == 0, repl.stderr
    assert "lr 0.02 32" in repl.stdout
    assert "model GPT True" in repl.stdout and "opt AdamW True" in repl.stdout
    for name in ("cfg", "config", "recipe", "data", "model", "optimizer"):
        assert re.search(rf"^  {name}\s", repl.stderr, re.M), repl.stderr
    assert not out.exists()


def test_show_completion_prints_a_bash_script(project: Path, env: dict[str, str]) -> None:
    # Typer detects the shell from the process tree (an argument is ignored), so run it under
    # bash that stays the parent (`; true` keeps bash from exec-ing stoker): CI's make uses sh.
    proc = subprocess.run(["bash", "-c", f"{STOKER} --show-completion; true"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert "_STOKER_COMPLETE" in proc.stdout and "complete " in proc.stdout
    # and the script's protocol completes commands
    comp = stoker(cwd=project, env={**env, "_STOKER_COMPLETE": "complete_bash",
                                    "COMP_WORDS": "stoker ex", "COMP_CWORD": "1"})
    assert comp.returncode == 0 and "exp" in comp.stdout.split(), comp


def test_a_slurm_sweep_is_one_job_array(slurm_cluster: SlurmCluster, tiny_data: Path,
                                        project: Path, env: dict[str, str]) -> None:
    env = {**env, **slurm_cluster.env}
    out = project / "array"
    launch = stoker("train", "gpt-char", *tiny_overrides(tiny_data, out, "trainer.max_steps=3"),
                    "seed=1,2,3", "-m", "executor=slurm", "executor.signal=null", "--detach",
                    "--yes", cwd=project, env=env)
    assert launch.returncode == 0, launch.stderr
    exp_id = launched_id(launch)
    root = _store(env, exp_id)
    handles = [json.loads((root / t["folder"] / "handle.json").read_text())
               for t in _tasks(env, exp_id)]
    (array_id,) = {h["array_job_id"] for h in handles}  # ONE sbatch
    assert [h["job_id"] for h in handles] == [f"{array_id}_{i}" for i in range(3)]
    assert "--array=0-2" in (root / "array.sbatch").read_text()
    deadline = time.monotonic() + 400
    while True:
        status = stoker("exp", "status", exp_id, cwd=project, env=env)
        done = re.findall(r"^seed=\d\s+(SUCCEEDED|FAILED|CANCELLED)", status.stdout, re.M)
        if len(done) == 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert done == ["SUCCEEDED"] * 3, status.stdout
    assert sorted(p.name for p in out.iterdir()) == ["0_seed-1", "1_seed-2", "2_seed-3"]
    assert all(_steps(out / d) == [1, 2, 3] for d in ("0_seed-1", "1_seed-2", "2_seed-3"))
