"""Damaged job store records through the real CLI: each record kind written wrong by hand is
exit 2 naming the file and the field (no traceback), and `exp list`, `latest` and prefix
lookup skip that experiment with a warning while a healthy one beside it still lists."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from stoker.launch.experiment import Experiment
from stoker.launch.store import JobStore
from tests.launch.cli_helpers import experiments, stoker

pytestmark = pytest.mark.integration

SCRIPT = "import sys\nprint('ran', *sys.argv[1:], flush=True)\n"


def _edit(key: str, value: Any = None, drop: bool = False) -> Callable[[Any], Any]:
    def change(data: Any) -> Any:
        if drop:
            del data[key]
        else:
            data[key] = value
        return data
    return change


# (file, how it is damaged (a JSON text, or a change to the parsed record), what the
#  message names: the field, or the whole file)
CASES = {
    "experiment-list": ("experiment.json", "[]", "(the whole file)"),
    "experiment-string": ("experiment.json", '"x"', "(the whole file)"),
    "experiment-no-id": ("experiment.json", _edit("id", drop=True), "- id: missing"),
    "experiment-created-yesterday": ("experiment.json", _edit("created", "yesterday"),
                                     "- created: Input should be a valid number"),
    "experiment-not-json": ("experiment.json", '{"id": ', "is not valid JSON"),
    "task-empty": ("task.json", "{}", "- name: missing"),
    "task-wrong-types": ("task.json", _edit("threads", "many"),
                         "- threads: Input should be a valid integer"),
    "task-program-not-a-list": ("task.json", _edit("program", {"a": 1}),
                                "- program: Input should be a valid list"),
    "handle-empty": ("handle.json", "{}", "- kind: missing"),
    "handle-pid-abc": ("handle.json", _edit("pid", "abc"),
                       "- pid: Input should be a valid integer"),
    "exit-code-zero": ("exit.json", _edit("exit_code", "zero"),
                       "- exit_code: Input should be a valid integer"),
    "driver-empty": ("driver.json", "{}", "- pid: missing"),
    "skipped-reason-not-text": ("skipped.json", '{"reason": 5}',
                                "- reason: Input should be a valid string"),
}


def _launch(store: JobStore, title: str, cwd: Path) -> str:
    exp = Experiment(title, executor="local", store=store, cwd=cwd)
    exp.add_script(cwd / "job.py", [title], name="job")
    return exp.run()


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_record_is_exit_2_naming_file_and_field_and_never_hides_the_others(
        case: str, project: Path, env: dict[str, str]) -> None:
    file, damage, expected = CASES[case]
    (project / "job.py").write_text(SCRIPT)
    store = JobStore(Path(env["STOKER_HOME"]) / "experiments")
    healthy = _launch(store, "exp-a", project)
    victim = _launch(store, "exp-b", project)  # the newest: `latest` would be this one
    folder = store.path(victim)
    target = folder / file if file in ("experiment.json", "driver.json") else folder / "job" / file
    if file in ("driver.json", "skipped.json"):  # only read for a task not submitted
        (folder / "job" / "handle.json").unlink()
    if file == "skipped.json":
        (folder / "job" / file).write_text('{"reason": "not submitted: cancelled"}')
    assert target.is_file()
    if callable(damage):
        damage = json.dumps(damage(json.loads(target.read_text())))
    target.write_text(damage)

    status = stoker("exp", "status", victim, cwd=project, env=env)
    assert status.returncode == 2, status.stdout + status.stderr
    assert f"damaged job store record {target}" in status.stderr, status.stderr
    assert expected in status.stderr, status.stderr
    assert f"rm -r {folder}" in status.stderr  # how to fix it
    assert "Traceback" not in status.stderr

    listing = stoker("exp", "list", cwd=project, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr
    assert re.search(rf"^{healthy}\s+exp-a\s+.*SUCCEEDED", listing.stdout, re.M), listing.stdout
    assert victim not in listing.stdout
    assert f"warning: skipped damaged job store record {target}" in listing.stderr

    if file == "experiment.json":  # what names an experiment: lookups pass over it
        latest = stoker("exp", "status", "latest", cwd=project, env=env)
        assert latest.returncode == 0 and f"experiment {healthy}" in latest.stdout, latest
        assert f"warning: skipped damaged job store record {target}" in latest.stderr
        prefix = stoker("exp", "logs", "exp-", cwd=project, env=env)  # matches both ids
        assert prefix.returncode == 0 and "ran exp-a" in prefix.stdout, prefix
        only = stoker("exp", "status", "exp-b", cwd=project, env=env)  # matches the victim only
        assert only.returncode == 2 and str(target) in only.stderr, only
        assert "Traceback" not in latest.stderr + prefix.stderr + only.stderr
    if file in ("experiment.json", "task.json"):  # what a rerun is made of: refused whole
        before = experiments(env)
        rerun = stoker("exp", "rerun", victim, cwd=project, env=env)
        assert rerun.returncode == 2 and str(target) in rerun.stderr, rerun
        assert "Traceback" not in rerun.stderr
        assert experiments(env) == before  # nothing half-written


def test_a_sweep_with_missing_task_records_is_refused_by_rerun_naming_the_points(
        project: Path, env: dict[str, str]) -> None:
    """A store where 2 of a sweep's 4 task records are gone (an older stoker's launcher
    killed mid-way, or files removed): rerun refuses and names both points instead of
    rerunning the other two and saying SUCCEEDED."""
    (project / "job.py").write_text(SCRIPT)
    store = JobStore(Path(env["STOKER_HOME"]) / "experiments")
    healthy = _launch(store, "other", project)
    exp = Experiment("sw", executor="local", store=store, cwd=project)
    for seed in range(4):
        exp.add_script(project / "job.py", [str(seed)], name=f"seed={seed}")
    exp.sweep = {"keys": ["seed"], "points": 4}
    exp.argv = ["stoker", "train", "recipe.yaml", "seed=0,1,2,3", "-m"]
    exp_id = exp.run()
    for folder in ("seed=2", "seed=3"):
        (store.path(exp_id) / folder / "task.json").unlink()

    before = experiments(env)
    rerun = stoker("exp", "rerun", exp_id, cwd=project, env=env)
    assert rerun.returncode == 2, rerun.stdout + rerun.stderr
    assert "lists 4 tasks, but 2 have no task.json: sweep points 'seed=2', 'seed=3'" \
        in rerun.stderr, rerun.stderr
    assert "Launch it again with `stoker train recipe.yaml seed=0,1,2,3 -m`" in rerun.stderr
    assert "Traceback" not in rerun.stderr and "SUCCEEDED" not in rerun.stdout + rerun.stderr
    assert experiments(env) == before
    status = stoker("exp", "status", exp_id, cwd=project, env=env)
    assert status.returncode == 2 and "'seed=2', 'seed=3'" in status.stderr, status
    listing = stoker("exp", "list", cwd=project, env=env)
    assert listing.returncode == 0 and healthy in listing.stdout
    assert exp_id not in listing.stdout and "'seed=2', 'seed=3'" in listing.stderr
