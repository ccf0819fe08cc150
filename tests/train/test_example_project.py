"""examples/my_project from its own directory, through the real CLI: it trains, resumes
bitwise after kill -9, evaluates, and publishes a model whose lineage reaches its data."""
from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file
from train_helpers import kill_9_at_step, read_metrics, run_cli, train_losses

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[1] / "examples" / "my_project"
# every step sleeps a little (tests/train/slow_steps.py, loaded with --import) so that a
# kill -9 lands mid-run; it changes no number
ARGS = ["train", "conf/config.yaml", "trainer.max_steps=40", "trainer.log_every=1",
        "checkpoint.every_steps=5", "checkpoint.keep_last=20", "register_artifact=false",
        "trainer.num_threads=1", "+callbacks.slow={_target_: slow_steps.SlowSteps, seconds: 0.03}",
        "--import", "slow_steps", "--yes"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(HERE), os.environ.get("PYTHONPATH", "")]))


def _weights(run: Path, step: int) -> dict:
    return load_file(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("example") / "ref"
    run_cli([str(Path(os.sys.executable).with_name("stoker"))],
            *ARGS, f"output_dir={out}", cwd=EXAMPLE, env=_env(), check=True)
    return out


def test_trains_and_evaluates_from_its_own_directory(stoker_cmd, reference: Path) -> None:
    steps = [r["step"] for r in read_metrics(reference) if "loss" in r]
    assert steps == list(range(1, 41))
    evals = [r for r in read_metrics(reference) if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [20, 40] and "eval/balanced_accuracy" in evals[0]
    assert evals[-1]["eval/accuracy"] > 0.8  # the classes are separable: it learned
    assert read_metrics(reference)[-2]["samples_seen"] == 40 * 16  # the user's callback
    ev = run_cli(stoker_cmd, "eval", str(reference), cwd=EXAMPLE, env=_env(), check=True)
    assert f"eval/accuracy: {evals[-1]['eval/accuracy']:.6g}" in ev.stdout


def test_kill_9_then_resume_is_bitwise_equal(stoker_cmd, reference: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    kill_at = random.Random().randint(7, 33)  # after the first checkpoint (step 5)
    code = kill_9_at_step([*stoker_cmd, *ARGS, f"output_dir={out}"], out, kill_at,
                          cwd=EXAMPLE, env=_env())
    assert code == -signal.SIGKILL, f"run ended before the kill at step {kill_at}"
    run_cli(stoker_cmd, *ARGS, f"output_dir={out}", cwd=EXAMPLE, env=_env(), check=True)
    assert train_losses(out) == train_losses(reference), f"killed at {kill_at}"
    a, b = _weights(out, 40), _weights(reference, 40)
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)




def test_published_with_lineage_to_its_data(stoker_cmd, tmp_path: Path) -> None:
    # a copy: publishing leaves the registry's sidecar in data/, not in the source tree
    import shutil

    proj = tmp_path / "my_project"
    shutil.copytree(EXAMPLE, proj, ignore=shutil.ignore_patterns("outputs", "__pycache__"))
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(proj), env["PYTHONPATH"]])
    pub = subprocess.run([str(Path(os.sys.executable)), "-m", "my_project.publish"],
                         cwd=proj, env=env, capture_output=True, text=True, check=True)
    assert pub.stdout.strip() == "art://penguins-csv:v1"
    run_cli(stoker_cmd, "train", "conf/config.yaml", "trainer.max_steps=5", "model=linear",
            "data.path=${art:penguins-csv,path}/penguins.csv", f"output_dir={tmp_path / 'r'}",
            "--yes", cwd=proj, env=env, check=True)
    tree = run_cli(stoker_cmd, "artifacts", "lineage", "art://penguins:latest", env=env,
                   check=True).stdout
    assert "art://penguins:v1  ModelArtifact" in tree and "art://penguins-csv:v1  TableArtifact" in tree
