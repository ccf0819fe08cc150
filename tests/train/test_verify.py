"""``stoker verify RUN`` through the real CLI: a tiny run reproduces exactly; a tampered
record (weights or a logged loss) is caught and named; bad input is exit 2."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from train_helpers import reseal, run_cli, tiny_overrides

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run6(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 steps with dropout (every step draws from the RNG), checkpoints at 3 and 6."""
    out = tmp_path_factory.mktemp("verify") / "run"
    run_cli([str(Path(sys.executable).with_name("stoker"))], "train", "gpt-char",
            *tiny_overrides(tiny_data, out, "trainer.max_steps=6", "checkpoint.every_steps=3"),
            "--yes", check=True)
    return out


def _snapshot(run: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_verify_of_a_tiny_run_is_exact_and_leaves_the_run_alone(
        run6: Path, stoker_cmd, tmp_path: Path) -> None:
    before = _snapshot(run6)
    env = {**__import__("os").environ, "TMPDIR": str(tmp_path)}
    proc = run_cli(stoker_cmd, "verify", str(run6), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "re-ran steps 4..6" in proc.stdout and "from checkpoint step 3" in proc.stdout
    assert "exact:" in proc.stdout and "weight tensors at step 6" in proc.stdout
    assert "same fingerprint" in proc.stdout
    scratch = run_cli(stoker_cmd, "verify", str(run6), "--from-step", "0", "--steps", "3",
                      env=env)
    assert scratch.returncode == 0 and "exact:" in scratch.stdout, scratch.stdout
    assert "from step 0 (from scratch)" in scratch.stdout
    assert _snapshot(run6) == before  # only read
    assert not list(tmp_path.glob("stoker-verify-*"))  # the scratch directories are gone


def test_verify_names_tampered_weights(run6: Path, stoker_cmd, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(run6, run)
    step = run / "checkpoints" / "step-00000006"
    weights = load_file(step / "model.safetensors")
    weights["tok_emb.weight"] = weights["tok_emb.weight"].clone()
    weights["tok_emb.weight"].view(-1)[3] += 0.25
    save_file(weights, step / "model.safetensors")
    reseal(step, "model.safetensors")
    proc = run_cli(stoker_cmd, "verify", str(run))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "largest weight deviation: 0.25" in proc.stdout
    assert "in tok_emb.weight at step 6" in proc.stdout
    assert "does not reproduce" in proc.stdout and "Traceback" not in proc.stderr


def test_verify_names_a_tampered_loss(run6: Path, stoker_cmd, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run6, run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    for r in recs:
        if r.get("step") == 5 and "loss" in r:
            r["loss"] += 0.5
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    proc = run_cli(stoker_cmd, "verify", str(run))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "largest loss deviation: 0.5" in proc.stdout and "at step 5" in proc.stdout


def test_verify_refuses_what_is_not_a_run(run6: Path, stoker_cmd, tmp_path: Path) -> None:
    not_run = run_cli(stoker_cmd, "verify", str(tmp_path))
    assert not_run.returncode == 2 and "not a run directory" in not_run.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run6 / "config.yaml", bare / "config.yaml")
    no_ckpt = run_cli(stoker_cmd, "verify", str(bare))
    assert no_ckpt.returncode == 2 and "no committed checkpoint" in no_ckpt.stderr
    wrong = run_cli(stoker_cmd, "verify", str(run6), "--from-step", "4")
    assert wrong.returncode == 2 and "checkpoints are at steps 3, 6" in wrong.stderr
    for proc in (not_run, no_ckpt, wrong):
        assert "Traceback" not in proc.stderr


def test_a_span_with_nothing_recorded_is_bad_input_not_a_failure(run6: Path, stoker_cmd,
                                                                  tmp_path: Path) -> None:
    """A run that logs every N steps (the demo: 50) re-run over a span that has no logged
    loss and ends at no checkpoint compared nothing: exit 2 saying so, never "does not
    reproduce" (exit 1)."""
    run = tmp_path / "run"
    shutil.copytree(run6, run)
    metrics = run / "metrics.jsonl"
    kept = [ln for ln in metrics.read_text().splitlines()
            if json.loads(ln).get("step") not in (4, 5) or "loss" not in json.loads(ln)]
    metrics.write_text("\n".join(kept) + "\n")
    proc = run_cli(stoker_cmd, "verify", str(run), "--steps", "1")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing recorded to compare" in proc.stderr and "steps 3, 6" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_on_another_machine_a_small_drift_reproduces_within_the_tolerance(
        run6: Path, stoker_cmd, tmp_path: Path) -> None:
    """The run says it was recorded on another CPU: a float-level deviation passes (and is
    said to), one beyond --rtol does not."""
    from safetensors.torch import load_file, save_file

    from train_helpers import edit_state

    def elsewhere(tree: dict) -> dict:
        tree["machine"] = {**tree["machine"], "cpu": "Some Other CPU", "key": "0" * 16}
        return tree

    for delta, code in ((1e-6, 0), (0.25, 1)):
        run = tmp_path / f"run-{code}"
        shutil.copytree(run6, run)
        step = run / "checkpoints" / "step-00000006"
        edit_state(step, elsewhere)
        weights = load_file(step / "model.safetensors")
        weights["tok_emb.weight"] = weights["tok_emb.weight"].clone()
        weights["tok_emb.weight"].view(-1)[3] += delta
        save_file(weights, step / "model.safetensors")
        reseal(step, "model.safetensors")
        proc = run_cli(stoker_cmd, "verify", str(run))
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert "not the one the run was recorded on" in proc.stdout
        assert "Some Other CPU" in proc.stdout and "float-level drift" in proc.stdout
        want = "within rtol=0.0001 on another machine" if code == 0 else "beyond rtol=0.0001"
        assert want in proc.stdout, proc.stdout
