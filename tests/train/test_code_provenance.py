"""Provenance names the user's code, not stoker's checkout.

Through the real CLI, from a temp project directory: without a repository the run records
a content hash of the user's module (which changes when the module does) and no commit;
inside one it records that repository's commit, dirty flag and diff hash; stoker's own
version (and checkout) is recorded under its own key either way, and the published
model's lineage carries the same."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from train_helpers import run_cli, tiny_overrides

pytestmark = pytest.mark.integration


def _train(stoker_cmd, tiny_data: Path, project: Path, out: Path, reg: Path) -> dict:
    env = {**os.environ, "STOKER_REGISTRY": str(reg)}
    run_cli(stoker_cmd, "train", "gpt-char", *tiny_overrides(tiny_data, out),
            "trainer.max_steps=2", "register_artifact=true", "--import", "mymod", "--yes",
            cwd=project, env=env, check=True)
    return json.loads((out / "env.json").read_text())


def _git(project: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t",
                           *args], cwd=project, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_project_outside_git_records_its_content_not_stokers_checkout(
        stoker_cmd, tiny_data: Path, tmp_path: Path) -> None:
    import stoker
    from stoker.artifacts.registry import FsspecRegistry

    project = tmp_path / "proj"
    project.mkdir()
    mod = project / "mymod.py"
    mod.write_text("VALUE = 1\n")
    reg = tmp_path / "reg"
    env = _train(stoker_cmd, tiny_data, project, tmp_path / "a", reg)
    stoker_root = env["stoker"]["root"]
    assert env["git"] == {"commit": None, "dirty": None, "root": None}, env["git"]
    assert env["code"]["repos"] == []
    assert env["code"]["files"] == {str(mod.resolve()): hashlib.sha256(mod.read_bytes()).hexdigest()}
    assert env["code"]["sha256"]
    assert env["stoker"]["version"] == stoker.__version__
    if stoker_root:  # stoker runs from a checkout here: recorded as stoker's, apart
        assert env["stoker"]["commit"] and not Path(project).is_relative_to(stoker_root)

    model = FsspecRegistry(str(reg)).load("art://gpt-char:v1")
    assert model.producer.git_commit is None  # not stoker's commit
    assert model.producer.code_sha256 == env["code"]["sha256"]
    assert model.metadata["stoker"]["version"] == stoker.__version__
    lineage = run_cli(stoker_cmd, "artifacts", "lineage", "art://gpt-char:v1", "--registry",
                      str(reg), check=True).stdout
    assert f"code {env['code']['sha256'][:10]}" in lineage, lineage

    mod.write_text("VALUE = 2\n")  # the user's code changed: so does its record
    again = _train(stoker_cmd, tiny_data, project, tmp_path / "b", reg)
    assert again["code"]["sha256"] != env["code"]["sha256"]
    assert again["code"]["files"][str(mod.resolve())] == hashlib.sha256(b"VALUE = 2\n").hexdigest()


def test_a_project_in_git_records_its_commit_dirty_flag_and_diff(
        stoker_cmd, tiny_data: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "mymod.py").write_text("VALUE = 1\n")
    _git(project, "init", "-q")
    _git(project, "add", "mymod.py")
    _git(project, "commit", "-qm", "first")
    head = _git(project, "rev-parse", "HEAD")
    reg = tmp_path / "reg"
    clean = _train(stoker_cmd, tiny_data, project, tmp_path / "a", reg)
    assert clean["git"] == {"commit": head, "dirty": False, "root": str(project.resolve())}
    assert clean["code"]["files"] == {}  # the repository describes the module
    assert [r["commit"] for r in clean["code"]["repos"]] == [head]

    (project / "mymod.py").write_text("VALUE = 2\n")
    dirty = _train(stoker_cmd, tiny_data, project, tmp_path / "b", reg)
    assert dirty["git"]["commit"] == head and dirty["git"]["dirty"] is True
    assert dirty["code"]["repos"][0]["diff_sha256"]
    assert dirty["code"]["sha256"] != clean["code"]["sha256"]
