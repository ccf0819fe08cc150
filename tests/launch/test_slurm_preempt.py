"""Preemption on the real cluster: USR1 -> checkpoint -> requeue -> resume, bit for bit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stoker.launch.executors import get_executor
from stoker.launch.executors.base import JobState
from stoker.launch.task import Task
from tests._shared.engines import SlurmCluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import tiny_corpus_text, tiny_overrides, train_losses  # noqa: E402

pytestmark = pytest.mark.integration
STEPS = 60


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return out


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")


@pytest.fixture(scope="module")
def tiny_char_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stoker.data.prepare import prepare

    root = tmp_path_factory.mktemp("preempt_data")
    (root / "corpus.txt").write_text(tiny_corpus_text(), encoding="utf-8")
    return prepare([str(root / "corpus.txt")], root / "char", type="char",
                   split_ratios=(0.9, 0.1, 0.0), workers=1)


def test_usr1_requeues_and_resumes_bitwise(slurm_cluster: SlurmCluster, tiny_char_data: Path,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    for k, v in slurm_cluster.env.items():
        monkeypatch.setenv(k, v)
    env = {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    args = ["-m", "stoker", "train", "gpt-char"]
    ref, out = tmp_path / "ref", tmp_path / "preempted"
    ref_args = [*args, *tiny_overrides(tiny_char_data, ref), f"trainer.max_steps={STEPS}",
                "--yes"]
    subprocess.run([sys.executable, *ref_args], check=True, capture_output=True,
                   env={**os.environ, **env}, timeout=300)

    job_dir = tmp_path / "exp" / "train"
    job_dir.mkdir(parents=True)
    task = Task(name="train", program=[*args, *tiny_overrides(tiny_char_data, out),
                                       f"trainer.max_steps={STEPS}", "--yes"],
                job_dir=job_dir, workdir=job_dir, env=env)
    ex = get_executor({"kind": "slurm"})
    handle = ex.submit(task)

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(r.get("step", 0) >= 3 for r in _metrics(out)):
        time.sleep(0.02)
    slurm_cluster.run("scancel", "--signal=USR1", handle["job_id"])
    signalled = time.monotonic()

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not ex.status(handle).state.is_terminal:
        time.sleep(0.5)
    st = ex.status(handle)
    logs = "\n".join(p.read_text() for p in ex.log_files(handle) if p.exists())
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), f"{st}\n{logs}"
    assert slurm_cluster.job_field(handle["job_id"], "Restarts") == "1", logs
    assert "requeueing job" in logs
    assert "SIGUSR1" in logs and "resum" in logs.lower()
    assert train_losses(out) == train_losses(ref)
    a, b = _weights(out), _weights(ref)
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    print(f"USR1 to job end (checkpoint, requeue, resume, finish): "
          f"{time.monotonic() - signalled:.1f} s")
