"""The real engines the launch tests stand on: each does the one thing the executors rely on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._shared.engines import DockerEngine, DockerImage, SlurmCluster, SshServer

pytestmark = pytest.mark.integration


def test_slurm_runs_a_batch_job_and_writes_its_output(slurm_cluster: SlurmCluster,
                                                      tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    out = tmp_path / "out-%j.txt"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={out}\necho hello from $SLURM_JOB_ID\n"
                      "exit 3\n")
    job_id = slurm_cluster.run("sbatch", "--parsable", str(script)).stdout.strip()
    assert job_id.isdigit()
    assert slurm_cluster.wait_state(job_id, {"COMPLETED", "FAILED"}) == "FAILED"
    assert slurm_cluster.job_field(job_id, "ExitCode") == "3:0"
    assert (tmp_path / f"out-{job_id}.txt").read_text() == f"hello from {job_id}\n"


def test_slurm_requeues_a_job_from_inside(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """`scontrol requeue` from the job itself restarts it (what preemption relies on)."""
    script = tmp_path / "job.sh"
    out = tmp_path / "out.txt"
    script.write_text(f"""#!/bin/bash
#SBATCH --output={out}
#SBATCH --open-mode=append
#SBATCH --requeue
echo run ${{SLURM_RESTART_COUNT:-0}}
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then scontrol requeue $SLURM_JOB_ID; sleep 30; fi
""")
    job_id = slurm_cluster.run("sbatch", "--parsable", str(script)).stdout.strip()
    assert slurm_cluster.wait_state(job_id, {"COMPLETED"}, timeout=90) == "COMPLETED"
    assert slurm_cluster.job_field(job_id, "Restarts") == "1"
    assert [ln for ln in out.read_text().splitlines() if ln.startswith("run")] == \
        ["run 0", "run 1"]


def test_docker_runs_python_from_the_mounted_venv(docker_engine: DockerEngine,
                                                  docker_image: DockerImage) -> None:
    code = "import sys, torch, stoker; print(sys.prefix, torch.__version__, stoker.__file__)"
    res = docker_engine.run("run", "--rm", "--network", "none", *docker_image.run_args(),
                            "-e", "PYTHONPATH=" + os.environ.get("PYTHONPATH", ""),
                            docker_image.name, docker_image.python, "-c", code)
    prefix, torch_version, stoker_file = res.stdout.split()
    assert prefix == sys.prefix
    import stoker
    import torch

    assert torch_version == torch.__version__
    assert stoker_file == stoker.__file__


def test_docker_image_is_local_only(docker_engine: DockerEngine,
                                    docker_image: DockerImage) -> None:
    """The image has no system of its own: without the mounts there is no shell."""
    res = docker_engine.run("run", "--rm", "--network", "none", docker_image.name, "/bin/sh",
                            "-c", "true", check=False)
    assert res.returncode != 0


def test_ssh_to_the_login_node_reaches_the_cluster(sshd_localhost: SshServer,
                                                  slurm_cluster: SlurmCluster,
                                                  tmp_path: Path) -> None:
    """A job submitted here shows in ``squeue`` run over SSH (the server sets SLURM_CONF)."""
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n#SBATCH --output={tmp_path}/out.txt\nsleep 30\n")
    job_id = slurm_cluster.run("sbatch", "--parsable", str(script)).stdout.strip()
    try:
        res = subprocess.run([*sshd_localhost.ssh_args(), "echo", "$SLURM_CONF", "&&",
                              "squeue", "-h", "-o", "%i"],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        conf, *jobs = res.stdout.split()
        assert conf == str(slurm_cluster.conf)
        assert job_id in jobs
    finally:
        slurm_cluster.run("scancel", job_id)


def test_an_absent_engine_skips_and_fails_under_ci(tmp_path: Path) -> None:
    """Without the engines the tests say why they skip; STOKER_REQUIRE_ENGINES=1 fails them."""
    test = tmp_path / "test_needs_slurm.py"
    test.write_text("def test_it(slurm_cluster):\n    pass\n")
    (tmp_path / "conftest.py").write_text(
        "from tests._shared.engines import slurm_cluster  # noqa: F401\n")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PATH": str(tmp_path), "PYTHONPATH": os.pathsep.join(
        [str(repo), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
           str(test)]

    env.pop("STOKER_REQUIRE_ENGINES", None)
    skipped = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert skipped.returncode == 0, skipped.stdout
    assert "SKIPPED" in skipped.stdout
    assert "no engine: slurm (run `make engines` as root)" in skipped.stdout

    failed = subprocess.run(cmd, env={**env, "STOKER_REQUIRE_ENGINES": "1"}, cwd=tmp_path,
                            capture_output=True, text=True)
    assert failed.returncode == 1, failed.stdout
    assert "no engine: slurm (run `make engines` as root)" in failed.stdout
