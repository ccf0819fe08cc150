"""Process executors (local, detached) and experiments with real processes.

PID-reuse guard, exit codes through the wrapper, dependency graphs, a failed task named,
and several processes launching at once while others query (the store stays whole).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stoker.errors import RunError, UserError
from stoker.launch.config import DetachedConfig
from stoker.launch.executors import JobState, get_executor
from stoker.launch.executors.process import process_alive
from stoker.launch.driver import experiment_states
from stoker.launch.experiment import Experiment
from stoker.launch.store import JobStore

HERE = Path(__file__).parent

SCRIPT = """
import os, sys, time
print("args", *sys.argv[1:], flush=True)
print("err line", file=sys.stderr, flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    p = tmp_path / "job.py"
    p.write_text(SCRIPT)
    return p


def test_a_reused_pid_is_not_taken_for_the_job(tmp_path: Path) -> None:
    """A handle whose PID now belongs to another process (here: this one) is not RUNNING,
    and cancelling it signals nobody."""
    me = psutil.Process()
    assert process_alive(me.pid, me.create_time())
    stale = me.create_time() - 3600.0  # the job started an hour earlier with this PID
    assert not process_alive(me.pid, stale)
    job_dir = tmp_path / "exp" / "t"
    job_dir.mkdir(parents=True)
    handle = {"kind": "detached", "pid": me.pid, "create_time": stale, "job_dir": str(job_dir)}
    ex = get_executor(DetachedConfig(cancel_grace_s=0))
    st = ex.status(handle)
    assert st.state == JobState.FAILED and "without recording an exit status" in st.detail
    ex.cancel(handle)  # must not SIGTERM this test process
    assert me.is_running()


def test_experiment_graph_runs_in_order_and_names_the_failed_task(tmp_path: Path,
                                                                  script: Path) -> None:
    store = JobStore(tmp_path / "store")
    exp = Experiment("graph", executor="local", store=store, cwd=tmp_path)
    exp.add_script(script, ["a", "0.3"], name="a")
    exp.add_script(script, ["b", "0", "3"], name="b", depends_on=["a"])
    exp.add_script(script, ["c"], name="c", depends_on=["b"])
    exp.add_script(script, ["d"], name="d", depends_on=["a"])
    with pytest.raises(RunError, match=r"task 'b' failed \(exit code 3\)"):
        exp.run()
    states = {s.record.name: s for s in experiment_states(store, exp.id)}
    assert states["a"].status.state == JobState.SUCCEEDED
    assert (states["b"].status.state, states["b"].status.exit_code) == (JobState.FAILED, 3)
    assert states["c"].status.state == JobState.CANCELLED and "'b'" in states["c"].status.detail
    assert states["d"].status.state == JobState.SUCCEEDED
    a_end = json.loads((store.task_dir(exp.id, "a") / "exit.json").read_text())["ended"]
    b_start = json.loads((store.task_dir(exp.id, "b") / "exit.json").read_text())["started"]
    assert b_start >= a_end  # b waited for a
    out = (store.task_dir(exp.id, "a") / "logs" / "stdout.log").read_text()
    assert out == "args a 0.3\n"
    assert (store.task_dir(exp.id, "a") / "logs" / "stderr.log").read_text() == "err line\n"


def test_sequential_and_bad_graphs(tmp_path: Path, script: Path) -> None:
    store = JobStore(tmp_path / "store")
    exp = Experiment("seq", executor="local", store=store, cwd=tmp_path)
    exp.add_script(script, ["1"], name="one")
    exp.add_script(script, ["2"], name="two")
    exp.run(mode="sequential")
    assert [s.record.depends_on for s in experiment_states(store, exp.id)] == [[], ["one"]]
    par = Experiment("par", executor="detached", store=store, cwd=tmp_path)
    par.add_script(script, ["p1", "1.0"], name="p1")
    par.add_script(script, ["p2", "1.0"], name="p2")
    par.run(mode="parallel")
    ends = [json.loads((store.task_dir(par.id, n) / "exit.json").read_text()) for n in ("p1", "p2")]
    assert ends[1]["started"] < ends[0]["ended"]  # both ran at once
    with pytest.raises(UserError, match="mode='parallel' runs every task at once"):
        e = Experiment("bad-par", executor="local", store=store, cwd=tmp_path)
        e.add_script(script, name="x")
        e.add_script(script, name="y", depends_on=["x"])
        e.launch(mode="parallel")
    bad = Experiment("bad", executor="local", store=store, cwd=tmp_path)
    bad.add_script(script, name="x", depends_on=["y"])
    bad.add_script(script, name="y", depends_on=["x"])
    with pytest.raises(UserError, match=r"cycle: x -> y -> x"):
        bad.launch()
    with pytest.raises(UserError, match=r"depends on 'z'"):
        e = Experiment("bad2", executor="local", store=store, cwd=tmp_path)
        e.add_script(script, name="x", depends_on=["z"])
        e.launch()
    assert {e["title"] for e in store.list()} == {"seq", "par"}  # nothing written for the bad ones


def test_detached_experiment_with_dependencies_is_driven_in_the_background(
        tmp_path: Path, script: Path) -> None:
    store = JobStore(tmp_path / "store")
    exp = Experiment("bg", executor="detached", store=store, cwd=tmp_path)
    exp.add_script(script, ["first", "0.5"], name="first")
    exp.add_script(script, ["second"], name="second", depends_on=["first"])
    exp_id = exp.run(detach=True)  # returns at once
    assert store.handle(exp_id, "second") is None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = experiment_states(store, exp_id)
        if all(s.status.state.is_terminal for s in states):
            break
        time.sleep(0.2)
    assert [s.status.state for s in states] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert "args second" in (store.task_dir(exp_id, "second") / "logs" / "stdout.log").read_text()


@pytest.mark.integration
def test_concurrent_launches_and_status_queries_keep_the_store_whole(
        tmp_path: Path, script: Path, env: dict[str, str]) -> None:
    workers, each = 5, 4
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(HERE / "_launcher.py"), str(script),
                               str(each), str(w), str(go)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    stoker = [str(Path(sys.executable).with_name("stoker"))]
    time.sleep(0.5)
    go.touch()
    queries = []
    while any(p.poll() is None for p in procs):  # status queries during the launches
        q = subprocess.run([*stoker, "exp", "list", "-n", "100"], env=env, capture_output=True,
                           text=True, timeout=120)
        queries.append(q)
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        ids.extend(json.loads(out.strip().splitlines()[-1]))
    assert all(q.returncode == 0 and "Traceback" not in q.stderr for q in queries), queries
    assert len(ids) == len(set(ids)) == workers * each
    store = JobStore(Path(env["STOKER_HOME"]) / "experiments")
    assert sorted(e["id"] for e in store.list()) == sorted(ids)
    deadline = time.monotonic() + 120
    for exp_id in ids:
        while True:
            states = experiment_states(store, exp_id)
            if all(s.status.state.is_terminal for s in states) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [s.status.state for s in states] == [JobState.SUCCEEDED] * 2, exp_id
        for s in states:
            words = (store.task_dir(exp_id, s.record.folder) / "logs" / "stdout.log").read_text()
            assert words.startswith("args " + s.record.program[-1])
    final = subprocess.run([*stoker, "exp", "status", ids[0]], env=env, capture_output=True,
                           text=True, timeout=60)
    assert final.returncode == 0 and final.stdout.count("SUCCEEDED") == 3, final.stdout
