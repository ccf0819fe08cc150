"""A launcher killed at each point that changes the job store (the STOKER_TEST_KILL_AT hook
of stoker.launch.testhook: SIGKILL exactly there) leaves a store that `exp status`, `exp
list`, `exp logs --follow` and `exp rerun` read true, through the real CLI: before the
commit no experiment (nothing was submitted); after it, every task that will never start
LOST with how to rerun, never PENDING forever; a driver started but not yet recorded still
drives."""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.launch.cli_helpers import experiments, launched_id, stoker, wait_for

pytestmark = pytest.mark.integration

ENTRYPOINT = '''
import stoker


@stoker.entrypoint
def work(n: int = 1):
    """Print n."""
    print("n is", n, flush=True)


if __name__ == "__main__":
    stoker.main(work, default_executor="detached")
'''
POINTS = ["n=1", "n=2", "n=3"]


def _sweep(project: Path, env: dict[str, str], kill_at: str | None = None):
    """A 3-point sweep of the script, detached, one point at a time (so a background driver
    submits the last two), its launcher killed at ``kill_at``."""
    script = project / "ep.py"
    script.write_text(ENTRYPOINT)
    env = {**env, "STOKER_TEST_KILL_AT": kill_at} if kill_at else env
    return stoker(str(script), "n=1,2,3", "-m", "--parallel", "1", "--yes", cwd=project,
                  env=env, python=True, timeout=120)


def _root(env: dict[str, str]) -> Path:
    return Path(env["STOKER_HOME"]) / "experiments"


def _rows(status_stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^(n=\d)\s+([A-Z]+)\b", status_stdout, re.M))


@pytest.mark.parametrize("kill_at", ["launch-created", "launch-task-recorded:2"])
def test_a_launcher_killed_before_its_commit_leaves_no_experiment(
        kill_at: str, project: Path, env: dict[str, str]) -> None:
    healthy = launched_id(_sweep(project, env))
    killed = _sweep(project, env, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (folder,) = [_root(env) / e for e in experiments(env) if e != healthy]
    assert not (folder / "experiment.json").exists()
    assert not list(folder.glob("*/handle.json"))  # nothing was submitted

    listing = stoker("exp", "list", cwd=project, env=env)
    assert listing.returncode == 0, listing.stderr
    assert healthy in listing.stdout and folder.name not in listing.stdout
    assert f"{folder} is not an experiment: its launcher stopped before recording it" \
        in listing.stderr and "nothing of it was submitted" in listing.stderr
    status = stoker("exp", "status", folder.name, cwd=project, env=env)
    assert status.returncode == 2 and f"rm -r {folder}" in status.stderr, status
    latest = stoker("exp", "status", "latest", cwd=project, env=env)
    assert latest.returncode == 0 and f"experiment {healthy}" in latest.stdout, latest
    for p in (listing, status, latest):
        assert "Traceback" not in p.stderr


def test_a_launcher_killed_after_its_commit_leaves_lost_tasks_that_rerun_runs(
        project: Path, env: dict[str, str]) -> None:
    killed = _sweep(project, env, "launch-committed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (exp_id,) = experiments(env)
    driver = json.loads((_root(env) / exp_id / "driver.json").read_text())
    assert driver["role"] == "launcher"  # recorded before any task record

    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert status.returncode == 1, status.stdout + status.stderr
    assert _rows(status.stdout) == dict.fromkeys(POINTS, "LOST"), status.stdout
    assert f"its launcher (pid {driver['pid']}) ended before submitting it" in status.stdout
    assert f"stoker exp rerun {exp_id}" in status.stderr
    assert "sweep of 3 points over n" in status.stdout
    listing = stoker("exp", "list", cwd=project, env=env)
    assert re.search(rf"^{exp_id}\s.*\sLOST\s+3 lost$", listing.stdout, re.M), listing.stdout
    follow = stoker("exp", "logs", exp_id, "n=2", "--follow", cwd=project, env=env, timeout=60)
    assert follow.returncode == 1, follow.stderr  # ends: it will never start
    assert "task n=2 will never start (LOST)" in follow.stderr

    rerun = stoker("exp", "rerun", exp_id, cwd=project, env=env)
    assert rerun.returncode == 0, rerun.stderr
    new_id = launched_id(rerun)
    wait_for(lambda: _rows(stoker("exp", "status", new_id, cwd=project, env=env).stdout)
             == dict.fromkeys(POINTS, "SUCCEEDED"), timeout=180, what="the rerun's 3 points")
    for s in (status, listing, follow, rerun):
        assert "Traceback" not in s.stderr


def test_a_launcher_killed_after_its_first_submission_loses_only_the_rest(
        project: Path, env: dict[str, str]) -> None:
    killed = _sweep(project, env, "submitted")  # the first point submitted, no driver yet
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (exp_id,) = experiments(env)
    follow = stoker("exp", "logs", exp_id, "n=1", "--follow", cwd=project, env=env, timeout=120)
    assert follow.returncode == 0 and follow.stdout == "n is 1\n", follow
    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert status.returncode == 1
    assert _rows(status.stdout) == {"n=1": "SUCCEEDED", "n=2": "LOST", "n=3": "LOST"}, \
        status.stdout
    assert "2 tasks will never start (LOST: n=2, n=3)" in status.stderr
    follow_lost = stoker("exp", "logs", exp_id, "--follow", cwd=project, env=env, timeout=60)
    assert follow_lost.returncode == 1 and "n is 1" in follow_lost.stdout
    assert "task n=3 will never start (LOST)" in follow_lost.stderr


def test_a_driver_started_by_a_launcher_killed_before_recording_it_still_drives(
        project: Path, env: dict[str, str]) -> None:
    killed = _sweep(project, env, "driver-started")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (exp_id,) = experiments(env)
    seen: set[str] = set()

    def finished() -> bool:
        st = stoker("exp", "status", exp_id, cwd=project, env=env)
        seen.update(_rows(st.stdout).values())
        return _rows(st.stdout) == dict.fromkeys(POINTS, "SUCCEEDED")

    wait_for(finished, timeout=180, what="the background driver's points")
    assert "LOST" not in seen
    assert json.loads((_root(env) / exp_id / "driver.json").read_text())["role"] == "driver"
