"""The Slurm executor against a real single-node cluster, directly and through an sshd."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stoker.errors import ConfigError, UserError
from stoker.launch.config import SlurmConfig, parse_executor_config
from stoker.launch.executors import get_executor
from stoker.launch.executors.base import JobState, JobStatus
from stoker.launch.executors.slurm import SlurmExecutor, slurm_state
from stoker.launch.task import Task
from tests._shared.engines import SlurmCluster, SshServer

GOLDEN = Path(__file__).with_name("golden")


def _task(tmp_path: Path, name: str, code: str, project: Path | None = None) -> Task:
    project = project or tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "helper.py").write_text("VALUE = 42\n")
    return Task(name=name, program=["-c", code], job_dir=tmp_path / "exp" / name,
                workdir=project, env={"STOKER_TEST_VAR": f"value-of-{name}"})


def _wait(ex: SlurmExecutor, handle: dict, timeout: float = 90.0,
          until: tuple[JobState, ...] | None = None) -> JobStatus:
    deadline = time.monotonic() + timeout
    st = ex.status(handle)
    while time.monotonic() < deadline:
        st = ex.status(handle)
        if (st.state in until) if until else st.state.is_terminal:
            return st
        time.sleep(0.3)
    raise AssertionError(f"job {handle['job_id']} still {st} after {timeout} s")


@pytest.fixture
def cluster(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The real cluster, with this process's Slurm commands pointed at it."""
    for k, v in slurm_cluster.env.items():
        monkeypatch.setenv(k, v)
    return slurm_cluster


@pytest.fixture
def slurm(cluster: SlurmCluster) -> SlurmExecutor:
    return get_executor({"kind": "slurm", "signal": None})  # type: ignore[return-value]


# --------------------------------------------------------------------------- unit


def test_state_mapping() -> None:
    assert slurm_state("PENDING") is JobState.PENDING
    assert slurm_state("REQUEUED") is JobState.PENDING
    assert slurm_state("COMPLETING") is JobState.RUNNING
    assert slurm_state("COMPLETED") is JobState.SUCCEEDED
    assert slurm_state("CANCELLED by 0") is JobState.CANCELLED
    assert slurm_state("OUT_OF_MEMORY") is JobState.FAILED
    assert slurm_state("TIMEOUT") is JobState.FAILED
    assert slurm_state("") is JobState.UNKNOWN


def test_golden_script_with_gpus_and_container() -> None:
    """GPUs, Pyxis and two nodes cannot run here: the script is checked word for word."""
    config = SlurmConfig(
        nodes=2, gpus_per_node=8, cpus_per_task=16, mem="256G", time="04:00:00",
        account="proj", partition="gpu", qos="high", constraint="h100", exclusive=True,
        container_image="nvcr.io/nvidia/pytorch:24.05-py3", container_mounts=["/lustre:/lustre"],
        setup_lines=["module load cuda/12.4"], python="/opt/venv/bin/python",
        env_vars={"NCCL_DEBUG": "INFO", "HF_TOKEN": "hf_secret_value"})
    task = Task(name="train", program=["-m", "stoker", "train", "/scratch/exp/train/config.yaml",
                                       "--yes"],
                job_dir=Path("/scratch/exp/train"), workdir=Path("/scratch/exp/train/code"),
                env={"OMP_NUM_THREADS": "8"})
    text = SlurmExecutor(config).describe(task)
    assert "hf_secret_value" not in text
    expected = (GOLDEN / "slurm_gpu_container.txt").read_text()
    assert text == expected


def test_nodes_zero_is_refused() -> None:
    with pytest.raises(ConfigError, match="executor.nodes"):
        parse_executor_config({"kind": "slurm", "nodes": 0})


def test_sbatch_missing_without_login_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    ex = get_executor({"kind": "slurm"})
    task = _task(tmp_path, "t", "pass")
    with pytest.raises(UserError, match=r"executor\.host=LOGIN_NODE"):
        ex.submit(task)
    assert not (task.job_dir / "job.sbatch").exists()


def test_a_silent_login_node_times_out_with_a_message(tmp_path: Path) -> None:
    """A host that accepts the connection and never speaks: a clear error, in bounded time."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(srv.accept()[0]), daemon=True).start()
    ex = get_executor({"kind": "slurm", "host": "127.0.0.1", "port": srv.getsockname()[1],
                       "ssh_timeout_s": 2, "ssh_options": ["UserKnownHostsFile=/dev/null"]})
    task = _task(tmp_path, "t", "pass")
    t0 = time.monotonic()
    with pytest.raises(UserError, match="login node 127.0.0.1 port .* did not answer"):
        ex.submit(task)
    assert time.monotonic() - t0 < 30
    srv.close()


def test_a_closed_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ex = get_executor({"kind": "slurm", "host": "127.0.0.1", "port": port, "ssh_timeout_s": 5})
    with pytest.raises(UserError, match=r"did not answer: .*(refused|closed).*executor\.host"):
        ex.submit(_task(tmp_path, "t", "pass"))


# --------------------------------------------------------------------------- real cluster


@pytest.mark.integration
def test_submit_runs_to_success_and_a_new_process_reads_it(slurm: SlurmExecutor,
                                                           tmp_path: Path) -> None:
    task = _task(tmp_path, "ok", "import os, helper; print('hello', helper.VALUE, "
                 "os.environ['STOKER_TEST_VAR'], os.getcwd())")
    handle = slurm.submit(task)
    assert handle["job_id"].isdigit()
    st = _wait(slurm, handle)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), st
    out = slurm.log_files(handle)[0].read_text().split()
    assert out[:3] == ["hello", "42", "value-of-ok"]
    # It ran in the shipped copy of the project, not the project itself.
    assert out[3] == str(task.job_dir / "code")
    code = json.loads((task.job_dir / "code.json").read_text())
    assert code["method"] == "copy" and code["files"] == 1

    reader = subprocess.run(
        [sys.executable, "-c", "import json, sys; from stoker.launch.executors import "
         "get_executor; st = get_executor({'kind': 'slurm'}).status(json.loads(sys.argv[1])); "
         "print(st.state.value, st.exit_code)", json.dumps(handle)],
        capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert reader.stdout.split() == ["SUCCEEDED", "0"], reader.stderr


@pytest.mark.integration
def test_a_failing_job_reports_its_exit_code_and_stderr(slurm: SlurmExecutor,
                                                        tmp_path: Path) -> None:
    handle = slurm.submit(_task(tmp_path, "bad", "import sys; sys.exit('boom')"))
    st = _wait(slurm, handle)
    assert (st.state, st.exit_code) == (JobState.FAILED, 1), st
    assert "boom" in slurm.log_files(handle)[1].read_text()
    assert json.loads((tmp_path / "exp" / "bad" / "exit.json").read_text())["exit_code"] == 1


@pytest.mark.integration
def test_cancel_a_running_job(slurm: SlurmExecutor, tmp_path: Path) -> None:
    handle = slurm.submit(_task(tmp_path, "long", "import time; print('up', flush=True); "
                                "time.sleep(300)"))
    _wait(slurm, handle, until=(JobState.RUNNING,))
    slurm.cancel(handle)
    st = _wait(slurm, handle)
    assert st.state is JobState.CANCELLED, st
    slurm.cancel(handle)  # cancelling an ended job is not an error


@pytest.mark.integration
def test_three_tasks_become_one_job_array(slurm: SlurmExecutor, tmp_path: Path) -> None:
    tasks = [_task(tmp_path, f"lr={lr}", f"print('lr', {lr})") for lr in (1, 2, 3)]
    handles = slurm.submit_array(tasks)
    (array_id,) = {h["array_job_id"] for h in handles}
    assert [h["job_id"] for h in handles] == [f"{array_id}_{i}" for i in range(3)]
    for lr, (task, handle) in enumerate(zip(tasks, handles), start=1):
        st = _wait(slurm, handle)
        assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), st
        assert task.stdout.read_text() == f"lr {lr}\n"
    assert "--array=0-2" in (tmp_path / "exp" / "array.sbatch").read_text()


@pytest.mark.integration
def test_afterok_waits_for_the_first_job(slurm: SlurmExecutor, tmp_path: Path) -> None:
    marker = tmp_path / "first-done"
    first = slurm.submit(_task(tmp_path, "first", f"import time, pathlib; time.sleep(4); "
                               f"pathlib.Path({str(marker)!r}).write_text('x')"))
    second = slurm.submit(_task(tmp_path, "second", f"import pathlib; print(pathlib.Path("
                                f"{str(marker)!r}).exists())"), after=[first])
    early = slurm.status(second)
    assert early.state is JobState.PENDING and "Dependency" in early.detail, early
    assert _wait(slurm, second).state is JobState.SUCCEEDED
    assert slurm.log_files(second)[0].read_text() == "True\n"


@pytest.mark.integration
def test_afterok_never_runs_after_a_failure(slurm: SlurmExecutor, tmp_path: Path) -> None:
    first = slurm.submit(_task(tmp_path, "first", "raise SystemExit(4)"))
    second = slurm.submit(_task(tmp_path, "second", "print('ran')"), after=[first])
    assert _wait(slurm, first).exit_code == 4
    deadline = time.monotonic() + 20
    st = slurm.status(second)
    while "DependencyNeverSatisfied" not in st.detail and time.monotonic() < deadline:
        time.sleep(0.3)
        st = slurm.status(second)
    assert st.state is JobState.PENDING and "DependencyNeverSatisfied" in st.detail, st
    slurm.cancel(second)
    assert _wait(slurm, second).state is JobState.CANCELLED
    assert not slurm.log_files(second)[0].exists()  # it never started


@pytest.mark.integration
def test_the_same_through_a_login_node(sshd_localhost: SshServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Submit, status and cancel over SSH; SLURM_CONF is set only on the server side."""
    monkeypatch.delenv("SLURM_CONF", raising=False)
    ex = get_executor({
        "kind": "slurm", "host": sshd_localhost.host, "port": sshd_localhost.port,
        "user": sshd_localhost.user, "identity": str(sshd_localhost.identity),
        "ssh_options": [f"UserKnownHostsFile={sshd_localhost.known_hosts}"],
        "env_vars": {"API_TOKEN": "s3cr3t"}})
    task = _task(tmp_path, "remote", "import os; print(os.environ['API_TOKEN'])")
    assert "s3cr3t" not in ex.describe(task)
    handle = ex.submit(task)
    assert "s3cr3t" not in (task.job_dir / "job.sbatch").read_text()
    st = _wait(ex, handle)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), st
    assert ex.log_files(handle)[0].read_text() == "s3cr3t\n"

    long = ex.submit(_task(tmp_path, "long", "import time; time.sleep(300)"))
    _wait(ex, long, until=(JobState.RUNNING,))
    ex.cancel(long)
    assert _wait(ex, long).state is JobState.CANCELLED


RANK_SCRIPT = """\
import os, pathlib, signal, sys, time
rank, world = os.environ["RANK"], os.environ["WORLD_SIZE"]
run = os.environ.get("SLURM_RESTART_COUNT", "0")
os.write(1, f"rank {rank} of {world} run {run}\\n".encode())  # one write: ranks share the file
if os.environ.get("READY_DIR") and run == "0":
    signal.signal(signal.SIGUSR1, lambda *a: sys.exit(138))  # 'checkpoint saved, stopping'
    pathlib.Path(os.environ["READY_DIR"], rank).touch()
    time.sleep(120)
"""


def _rank_task(tmp_path: Path, name: str, ready: Path | None = None) -> Task:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "rank.py").write_text(RANK_SCRIPT)
    env = {"READY_DIR": str(ready)} if ready else {}
    return Task(name=name, program=["rank.py"], job_dir=tmp_path / "exp" / name,
                workdir=project, env=env)


@pytest.mark.integration
def test_two_processes_under_srun_and_torchrun(cluster: SlurmCluster, tmp_path: Path) -> None:
    """The multi-process path for real: srun starts torchrun, the node is the rendezvous."""
    ex = get_executor({"kind": "slurm", "nproc_per_node": 2})
    task = _rank_task(tmp_path, "ddp")
    handle = ex.submit(task)
    st = _wait(ex, handle)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), (st, task.stderr.read_text())
    assert sorted(task.stdout.read_text().splitlines()) == ["rank 0 of 2 run 0",
                                                           "rank 1 of 2 run 0"]


@pytest.mark.integration
def test_usr1_to_a_torchrun_job_requeues_it(cluster: SlurmCluster, tmp_path: Path) -> None:
    """torchrun exits 1 whatever stopped its workers: the step's trap marks the USR1."""
    ex = get_executor({"kind": "slurm", "nproc_per_node": 2})
    ready = tmp_path / "ready"
    ready.mkdir()
    task = _rank_task(tmp_path, "ddp", ready)
    handle = ex.submit(task)
    deadline = time.monotonic() + 120
    while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    cluster.run("scancel", "--signal=USR1", handle["job_id"])
    st = _wait(ex, handle, timeout=120)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), (st, task.stderr.read_text())
    assert cluster.job_field(handle["job_id"], "Restarts") == "1"
    lines = task.stdout.read_text().splitlines()
    assert sorted(ln for ln in lines if ln.startswith("rank")) == [
        "rank 0 of 2 run 0", "rank 0 of 2 run 1", "rank 1 of 2 run 0", "rank 1 of 2 run 1"]


@pytest.mark.integration
def test_remote_dir_ships_the_job_folder_and_fetches_its_logs(
        sshd_localhost: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A login node that does not share our filesystem: the folder goes over SSH."""
    monkeypatch.delenv("SLURM_CONF", raising=False)
    remote = tmp_path / "cluster_fs"
    ex = get_executor({
        "kind": "slurm", "host": sshd_localhost.host, "port": sshd_localhost.port,
        "user": sshd_localhost.user, "identity": str(sshd_localhost.identity),
        "ssh_options": [f"UserKnownHostsFile={sshd_localhost.known_hosts}"],
        "remote_dir": str(remote)})
    task = _task(tmp_path, "far", "import helper, os; print(helper.VALUE, os.getcwd())")
    handle = ex.submit(task)
    remote_job = remote / task.job_id
    assert handle["remote_job_dir"] == str(remote_job)
    st = _wait(ex, handle)
    assert (st.state, st.exit_code) == (JobState.SUCCEEDED, 0), st
    assert not task.stdout.exists() or task.stdout.read_text() == ""  # ran over there
    assert ex.log_files(handle)[0].read_text() == f"42 {remote_job / 'code'}\n"
