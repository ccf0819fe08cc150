"""The Docker executor against a real Docker engine (a private dockerd, a locally imported
image whose system, Python and venv are the host's, mounted read-only)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stoker.errors import UserError
from stoker.launch.config import DOCKER_PASS_ENV, DockerConfig
from stoker.launch.executors import get_executor
from stoker.launch.executors.base import JobState, JobStatus
from stoker.launch.executors.docker import DockerExecutor, container_state
from stoker.launch.task import Task
from tests._shared.engines import DockerEngine, DockerImage
from tests.launch.cli_helpers import experiments, launched_id, stoker, wait_for
from train_helpers import read_metrics, tiny_overrides

GOLDEN = Path(__file__).with_name("golden")

SLOW_CALLBACK = '''
import time
from stoker.train.callbacks import Callback


class Slow(Callback):
    def on_step_end(self, trainer, step, metrics):
        time.sleep(0.1)
'''
ENTRYPOINT = '''
import stoker


@stoker.entrypoint
def work(n: int = 1, fail: bool = False):
    """Print n; fail on request."""
    print("n is", n, flush=True)
    if fail:
        raise RuntimeError("asked to fail")


if __name__ == "__main__":
    stoker.main(work)
'''


def _wait(ex: DockerExecutor, handle: dict, timeout: float = 120.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    st = ex.status(handle)
    while not st.state.is_terminal:
        assert time.monotonic() < deadline, f"container still {st} after {timeout} s"
        time.sleep(0.2)
        st = ex.status(handle)
    return st


def image_args(image: DockerImage, *extra_mounts: Path) -> list[str]:
    """``executor.*`` overrides that run the test image: its mounts, no network, this tree's
    sources (PYTHONPATH, named in env_vars: a host path is never passed by default)."""
    mounts = [f"{h}:{c}:ro" for h, c in image.mounts] + [f"{p}:{p}:ro" for p in extra_mounts]
    return ["executor=docker", f"executor.image={image.name}", "executor.network=none",
            f"executor.mounts=[{','.join(mounts)}]", "executor.env_vars=[PYTHONPATH]"]


@pytest.fixture
def docker_env(env: dict[str, str], docker_engine: DockerEngine) -> dict[str, str]:
    """The CLI's environment, pointed at the test engine."""
    return {**env, **docker_engine.env}


@pytest.fixture
def engine(docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch) -> DockerEngine:
    """The real engine, with this process's docker client pointed at it."""
    for k, v in docker_engine.env.items():
        monkeypatch.setenv(k, v)
    return docker_engine


# --------------------------------------------------------------------------- unit


def test_golden_command_with_gpus_shm_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """GPUs cannot run here: the docker command is checked word for word."""
    for name in DOCKER_PASS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setenv("PATH", "/host/only/bin")  # a host path: never passed
    monkeypatch.setenv("STOKER_HOME", "/home/me/.stoker")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    config = DockerConfig(
        image="nvcr.io/nvidia/pytorch:24.05-py3", gpus="device=0,1", shm_size="16g",
        user="1000:1000", network="host", mounts=["/data:/data:ro"],
        env_vars=["HF_TOKEN", "NCCL_DEBUG"], python="/opt/venv/bin/python",
        run_args=["--ipc=host"])
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    task = Task(name="train", program=["-m", "stoker", "train", "/scratch/exp/train/config.yaml",
                                       "--yes"],
                job_dir=Path("/scratch/exp/train"), workdir=Path("/home/me/proj"),
                run_dir="/home/me/proj/outputs/gpt-char/20250101-000000")
    ex = DockerExecutor(config)
    text = ex.describe(task)
    assert "hf_secret_value" not in text and "/host/only/bin" not in text
    assert text + "\n" == (GOLDEN / "docker_gpu.txt").read_text()
    # What --dryrun shows is what runs: the same words.
    assert ex.argv(task)[ex.argv(task).index("--gpus") + 1] == '"device=0,1"'
    ex2 = DockerExecutor(config.model_copy(update={"gpus": 2, "shm_size": None, "user": None}))
    argv = ex2.argv(task)
    assert argv[argv.index("--gpus") + 1] == "2"
    assert "--shm-size" not in argv and "--user" not in argv


def test_state_mapping() -> None:
    assert container_state({"Status": "created"}).state is JobState.PENDING
    assert container_state({"Status": "running"}).state is JobState.RUNNING
    assert container_state({"Status": "exited", "ExitCode": 0}) == JobStatus(JobState.SUCCEEDED, 0)
    assert container_state({"Status": "exited", "ExitCode": 3}).state is JobState.FAILED
    assert container_state({"Status": "exited", "ExitCode": 143},
                           cancelled=True).state is JobState.CANCELLED
    oom = container_state({"Status": "exited", "ExitCode": 137, "OOMKilled": True})
    assert oom.state is JobState.FAILED and "out of memory" in oom.detail


def test_workdir_and_ship_code_together_are_refused(tmp_path: Path) -> None:
    ex = get_executor({"kind": "docker", "image": "x", "workdir": "/app", "ship_code": True})
    with pytest.raises(UserError, match="pick|keep workdir"):
        ex.check(Task("t", ["-c", "pass"], tmp_path / "job", tmp_path))


@pytest.mark.integration
def test_no_docker_client_exits_2_and_says_how_to_fix(project: Path, env: dict[str, str],
                                                      tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (project / "ep.py").write_text(ENTRYPOINT)
    proc = stoker(str(project / "ep.py"), "executor=docker", "executor.image=x", "--dryrun",
                  cwd=project, env={**env, "PATH": str(bin_dir)}, python=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "docker client (`docker`) is not on PATH" in proc.stderr
    assert "apt-get install docker.io" in proc.stderr and "Traceback" not in proc.stderr
    assert experiments(env) == []


@pytest.mark.integration
def test_a_daemon_that_does_not_answer_exits_2(project: Path, env: dict[str, str],
                                               tmp_path: Path) -> None:
    import shutil

    if shutil.which("docker") is None:
        from tests._shared.engines import no_engine

        no_engine("docker", "no docker client (the missing-client test covers this machine)")
    (project / "ep.py").write_text(ENTRYPOINT)
    host = f"unix://{tmp_path}/nothing.sock"
    proc = stoker(str(project / "ep.py"), "executor=docker", "executor.image=x", "--yes",
                  cwd=project, env={**env, "DOCKER_HOST": host}, python=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Docker daemon at DOCKER_HOST={host} does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr and experiments(env) == []


# --------------------------------------------------------------------------- real engine


@pytest.mark.integration
def test_container_gets_only_named_env_read_only_project_and_exit_code(
        engine: DockerEngine, docker_image: DockerImage, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "helper.py").write_text("VALUE = 42\n")
    monkeypatch.setenv("STOKER_SECRET_TOKEN", "tok-123")
    monkeypatch.setenv("NOT_NAMED", "leak")
    config = {"kind": "docker", "image": docker_image.name, "network": "none",
              "mounts": [f"{h}:{c}:ro" for h, c in docker_image.mounts],
              "env_vars": ["STOKER_SECRET_TOKEN"], "python": docker_image.python,
              "shm_size": "48m"}
    code = ("import os, sys, helper; v = os.statvfs('/dev/shm'); "
            "print('hello', helper.VALUE, os.getcwd(), "
            "os.environ.get('STOKER_SECRET_TOKEN'), os.environ.get('NOT_NAMED'), "
            "os.environ.get('VISIBLE'), v.f_blocks * v.f_frsize // 2**20); "
            "print('to stderr', file=sys.stderr)\n"
            "try:\n    open('written.txt', 'w')\nexcept OSError as e:\n    print('ro', e.errno)\n"
            "sys.exit(3)")
    task = Task("fails", ["-c", code], tmp_path / "exp-env" / "fails", project,
                env={"VISIBLE": "yes"})
    ex = get_executor(config)
    described = ex.describe(task)
    assert "tok-123" not in described and "--env STOKER_SECRET_TOKEN \\" in described
    handle = ex.submit(task)
    # A new executor, as `stoker exp status` in another process builds it.
    st = _wait(get_executor(config), handle)
    assert (st.state, st.exit_code) == (JobState.FAILED, 3), st
    out, err = (p.read_text() for p in ex.log_files(handle))
    assert out.split() == ["hello", "42", str(project), "tok-123", "None", "yes", "48", "ro",
                           "30"]  # 48 MiB of /dev/shm: executor.shm_size reached docker
    assert err == "to stderr\n"
    assert not (project / "written.txt").exists()
    # The answer outlives the container.
    engine.run("rm", "--force", handle["container_id"])
    assert get_executor(config).status(handle) == JobStatus(JobState.FAILED, 3, "")


@pytest.mark.integration
def test_ship_code_runs_a_copy_with_uncommitted_changes(
        engine: DockerEngine, docker_image: DockerImage, tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "helper.py").write_text("VALUE = 'committed'\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (project / "helper.py").write_text("VALUE = 'uncommitted'\n")
    config = {"kind": "docker", "image": docker_image.name, "network": "none",
              "mounts": [f"{h}:{c}:ro" for h, c in docker_image.mounts], "ship_code": True,
              "python": docker_image.python}
    task = Task("ship", ["-c", "import os, helper; print(helper.VALUE, os.getcwd())"],
                tmp_path / "exp-ship" / "ship", project)
    ex = get_executor(config)
    handle = ex.submit(task)
    (project / "helper.py").write_text("VALUE = 'edited after launch'\n")
    st = _wait(ex, handle)
    assert st.state is JobState.SUCCEEDED, (st, ex.log_files(handle)[1].read_text())
    assert ex.log_files(handle)[0].read_text().split() == [
        "uncommitted", str(task.job_dir / "code")]
    snap = json.loads((task.job_dir / "code.json").read_text())
    assert snap["method"] == "git" and snap["dirty"] and snap["changed"] == ["helper.py"]
    assert f"--volume {task.job_dir}/code:{task.job_dir}/code:ro" in ex.describe(task)
    assert str(project) + ":" not in ex.describe(task)  # the project itself is not mounted


@pytest.mark.integration
def test_training_in_a_container_is_followed_cancelled_and_rerun_to_success(
        tiny_data: Path, project: Path, docker_env: dict[str, str], docker_engine: DockerEngine,
        docker_image: DockerImage) -> None:
    (project / "slowcb.py").write_text(SLOW_CALLBACK)
    env = {**docker_env, "PYTHONPATH": os.pathsep.join([str(project), docker_env["PYTHONPATH"]])}
    out = project / "outputs" / "tiny"
    train = ["train", "gpt-char", *tiny_overrides(tiny_data, out, "trainer.max_steps=40"),
             "+callbacks.slow={_target_:slowcb.Slow}", *image_args(docker_image, tiny_data)]
    dry = stoker(*train, "--dryrun", cwd=project, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "docker run --detach" in dry.stdout and f"--volume {out}:{out} \\" in dry.stdout
    assert f"--volume {project}:{project}:ro" in dry.stdout
    assert "nothing was submitted" in dry.stdout and experiments(env) == []

    launch = stoker(*train, "--detach", "--name", "box", "--yes", cwd=project, env=env)
    assert launch.returncode == 0, launch.stderr
    exp_id = launched_id(launch)
    job = Path(env["STOKER_HOME"]) / "experiments" / exp_id / "train"
    handle = json.loads((job / "handle.json").read_text())
    assert handle["kind"] == "docker" and handle["container_id"]
    assert docker_engine.run("inspect", "--format", "{{.State.Status}}",
                             handle["container_id"]).stdout.strip() == "running"
    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert re.search(r"train\s+RUNNING", status.stdout), status.stdout + status.stderr

    wait_for(lambda: (out / "metrics.jsonl").exists() and any(
        r.get("step", 0) >= 3 for r in read_metrics(out)), what="step 3 in the container")
    cancel = stoker("exp", "cancel", exp_id, cwd=project, env=env)
    assert cancel.returncode == 0 and "train: CANCELLED" in cancel.stdout, cancel.stdout
    assert docker_engine.run("inspect", "--format", "{{.State.Status}}",
                             handle["container_id"]).stdout.strip() == "exited"
    assert "SIGTERM received: saved checkpoint" in (job / "logs" / "stderr.log").read_text()
    stopped = max(r["step"] for r in read_metrics(out) if "loss" in r)
    assert stopped < 40 and (out / "checkpoints" / f"step-{stopped:08d}").is_dir()
    logs = stoker("exp", "logs", exp_id, cwd=project, env=env)
    assert logs.returncode == 0 and "step 1/40" in logs.stderr, logs.stderr[-2000:]

    rerun = stoker("exp", "rerun", exp_id, cwd=project, env=env)
    assert rerun.returncode == 0, rerun.stderr
    new_id = launched_id(rerun)
    follow = stoker("exp", "logs", new_id, "--follow", cwd=project, env=env)
    assert follow.returncode == 0, follow.stderr[-2000:]
    assert f"resuming in {out}" in follow.stderr and "finished at step 40" in follow.stdout
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == list(range(1, 41))
    assert (out / "config.yaml").is_file()  # the run directory, written through the mount
    status = stoker("exp", "status", new_id, cwd=project, env=env)
    assert status.returncode == 0 and re.search(r"train\s+SUCCEEDED", status.stdout)


@pytest.mark.integration
def test_a_failing_container_job_exits_1_through_the_cli(
        project: Path, docker_env: dict[str, str], docker_image: DockerImage) -> None:
    (project / "ep.py").write_text(ENTRYPOINT)
    bad = stoker(str(project / "ep.py"), "fail=true", *image_args(docker_image), "--yes",
                 cwd=project, env=docker_env, python=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr  # followed in the foreground
    assert "n is 1" in bad.stdout and "asked to fail" in bad.stderr
    failed_id = launched_id(bad)
    status = stoker("exp", "status", failed_id, cwd=project, env=docker_env)
    assert status.returncode == 1 and re.search(r"work\s+FAILED\s+1", status.stdout), status
