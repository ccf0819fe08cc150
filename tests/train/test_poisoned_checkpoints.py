"""Checkpoints with NaN/inf weights, through the real CLI (item 3 of issue 14): never saved,
refused when loaded (naming file and tensor, exit 2, no traceback, no metric printed),
loadable with --allow-nonfinite, and a NaN stop names the last finite checkpoint."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from train_helpers import poison_checkpoint, read_metrics, run_cli, tiny_overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def finished_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    out = tmp_path_factory.mktemp("poison") / "run"
    exe = [str(Path(sys.executable).with_name("stoker"))]
    run_cli(exe, "train", "gpt-char", *tiny_overrides(tiny_data, out), "trainer.max_steps=10",
            "--yes", check=True)
    return out


def _poisoned_copy(run: Path, dest: Path) -> tuple[Path, str]:
    shutil.copytree(run, dest)
    name = poison_checkpoint(dest / "checkpoints" / "step-00000010")
    return dest, name


def test_eval_and_generate_refuse_a_poisoned_checkpoint(stoker_cmd, finished_run: Path,
                                                        tmp_path: Path) -> None:
    run, name = _poisoned_copy(finished_run, tmp_path / "run")
    step10 = run / "checkpoints" / "step-00000010"
    for cmd in (["eval", str(step10)], ["eval", str(run)],
                ["generate", "text", "-c", str(run), "--prompt", "def ", "-n", "5"]):
        proc = run_cli(stoker_cmd, *cmd)
        assert proc.returncode == 2, (cmd, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "nan" not in proc.stdout.lower(), proc.stdout
        assert f"{step10 / 'model.safetensors'} tensor '{name}' (1 NaN of" in proc.stderr
        assert f"last finite checkpoint before it is {run / 'checkpoints' / 'step-00000005'}" \
            in proc.stderr
        assert "--allow-nonfinite" in proc.stderr
    debug = run_cli(stoker_cmd, "eval", str(step10), "--allow-nonfinite", "--batches", "1")
    assert debug.returncode == 0, debug.stderr
    assert "checkpoint:" in debug.stdout


def test_train_does_not_resume_from_a_poisoned_checkpoint(stoker_cmd, finished_run: Path,
                                                          tiny_data: Path, tmp_path: Path) -> None:
    run, name = _poisoned_copy(finished_run, tmp_path / "run")
    good = run / "checkpoints" / "step-00000005"
    proc = run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, run),
                   "trainer.max_steps=12", "--yes")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"tensor '{name}'" in proc.stderr and f"resume={good}" in proc.stderr
    run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, run),
            "trainer.max_steps=12", f"resume={good}", "--yes", check=True)
    assert (run / "checkpoints" / "step-00000012" / "COMMITTED").exists()


def test_nan_loss_stops_and_names_the_last_finite_checkpoint(stoker_cmd, finished_run: Path,
                                                             tiny_data: Path,
                                                             tmp_path: Path) -> None:
    """The loss itself turns NaN at step 11 (a second loss term weighted NaN is added on
    resume): the run stops there with exit 1, saves nothing at or after step 11, and names
    step 10, the last finite checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    proc = run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
                   "trainer.max_steps=30", "+losses.poison._target_=stoker.train.losses.MSE",
                   "+losses.poison.preds=preds.logits", "+losses.poison.targets=preds.logits",
                   "+losses.poison.weight=nan",
                   "allow_changes=[losses]",  # a new loss term changes the trajectory
                   "--yes")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    bad = [r["step"] for r in read_metrics(out) if "loss" in r and not math.isfinite(float(r["loss"]))]
    steps = sorted(int(p.name[5:]) for p in (out / "checkpoints").iterdir()
                   if p.name.startswith("step-"))
    assert bad == [11] and steps == [5, 10], (bad, steps, proc.stderr)
    assert "non-finite value at step 11: loss=nan" in proc.stderr, proc.stderr
    last = out / "checkpoints" / "step-00000010"
    assert f"the last finite checkpoint is {last}; resume from it with resume={last}" in \
        proc.stderr.replace("\n", ""), proc.stderr
