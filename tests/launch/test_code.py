"""Code shipping: HEAD plus uncommitted changes, honouring .gitignore; a copy outside git."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stoker.errors import UserError
from stoker.launch.code import planned_workdir, ship_code, write_snapshot


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "proj"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "model.py").write_text("WIDTH = 32\n")
    (repo / "gone.py").write_text("old\n")
    (repo / "train.py").write_text("print('train')\n")
    (repo / ".gitignore").write_text("outputs/\n*.ckpt\n")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return repo


def test_git_ships_head_plus_uncommitted_changes(repo: Path, tmp_path: Path) -> None:
    (repo / "pkg" / "model.py").write_text("WIDTH = 64\n")  # modified, not committed
    (repo / "pkg" / "new_layer.py").write_text("NEW = 1\n")  # untracked, not ignored
    (repo / "outputs").mkdir()
    (repo / "outputs" / "big.bin").write_text("ignored")  # ignored folder
    (repo / "weights.ckpt").write_text("ignored")  # ignored pattern
    (repo / "gone.py").unlink()  # deleted in the work tree

    snap = ship_code(repo / "pkg", tmp_path / "job" / "code")
    dest = tmp_path / "job" / "code"
    assert (dest / "pkg" / "model.py").read_text() == "WIDTH = 64\n"
    assert (dest / "pkg" / "new_layer.py").read_text() == "NEW = 1\n"
    assert (dest / "train.py").exists()
    assert not (dest / "outputs").exists() and not (dest / "weights.ckpt").exists()
    assert not (dest / "gone.py").exists()
    assert snap.method == "git" and snap.dirty
    assert snap.commit == _git(repo, "rev-parse", "HEAD")
    assert snap.workdir == str(dest / "pkg")
    assert sorted(snap.changed) == ["gone.py", "pkg/model.py", "pkg/new_layer.py"]
    assert snap.diff_sha256 and len(snap.diff_sha256) == 64

    # The same state hashes the same; any change to the uncommitted part changes the hash.
    assert ship_code(repo, tmp_path / "again").diff_sha256 == snap.diff_sha256
    (repo / "pkg" / "new_layer.py").write_text("NEW = 2\n")
    assert ship_code(repo, tmp_path / "changed").diff_sha256 != snap.diff_sha256

    write_snapshot(tmp_path / "job", snap)
    assert json.loads((tmp_path / "job" / "code.json").read_text())["commit"] == snap.commit


def test_a_clean_tree_records_its_commit_and_no_diff(repo: Path, tmp_path: Path) -> None:
    snap = ship_code(repo, tmp_path / "code")
    assert not snap.dirty and snap.diff_sha256 is None and snap.changed == []
    assert (tmp_path / "code" / "gone.py").read_text() == "old\n"


def test_outside_git_a_pattern_copy(tmp_path: Path) -> None:
    proj = tmp_path / "plain"
    (proj / "sub").mkdir(parents=True)
    (proj / "run.py").write_text("x")
    (proj / "sub" / "conf.yaml").write_text("a: 1")
    (proj / "data.bin").write_text("not code")
    (proj / ".venv" / "lib").mkdir(parents=True)
    (proj / ".venv" / "lib" / "site.py").write_text("no")
    snap = ship_code(proj, tmp_path / "code")
    got = sorted(p.relative_to(tmp_path / "code").as_posix()
                 for p in (tmp_path / "code").rglob("*") if p.is_file())
    assert got == ["run.py", "sub/conf.yaml"]
    assert snap.method == "copy" and snap.commit is None and snap.files == 2
    assert planned_workdir(proj, tmp_path / "x") == tmp_path / "x"


def test_an_existing_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    with pytest.raises(UserError, match="already exists"):
        ship_code(tmp_path, tmp_path / "code")
