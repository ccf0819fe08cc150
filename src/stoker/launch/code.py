"""Ship the user's code with a job: HEAD plus the uncommitted changes, honouring .gitignore.

A job that leaves this process tree (a Slurm job, a container) must run the code as it was
when it was launched, not as it is when the job starts, and a run must say exactly which
code that was. NeMo-Run ships ``git archive HEAD`` only, so an edit not yet committed is
silently left behind. Here the copy is:

- inside a git work tree: ``git archive HEAD``, then every tracked file modified in the work
  tree and every untracked file git does not ignore copied over it, and tracked files
  deleted in the work tree removed; recorded: the commit, whether the tree was dirty, and a
  SHA-256 of the difference (``git diff --binary HEAD`` plus the untracked files' names and
  bytes), so two launches from the same state record the same hash;
- outside git: a plain copy of the files matching ``patterns``, skipping hidden folders,
  virtualenvs and caches; recorded: a SHA-256 of the copied names and bytes.

Submodules are not expanded by ``git archive``; their folders arrive empty.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stoker.atomic import atomic_write_text
from stoker.errors import UserError

__all__ = ["CodeSnapshot", "DEFAULT_PATTERNS", "planned_workdir", "ship_code", "write_snapshot"]

DEFAULT_PATTERNS: tuple[str, ...] = ("*.py", "*.yaml", "*.yml", "*.toml", "*.json", "*.cfg",
                                     "*.txt", "*.sh")
_SKIP_DIRS = {".venv", "venv", "__pycache__", "node_modules", "outputs", "build", "dist"}
CODE_FILE = "code.json"


@dataclass
class CodeSnapshot:
    """What was shipped, recorded in the job folder as ``code.json``."""

    method: str  # "git" | "copy"
    source: str  # the folder copied (the git top level, or the work dir)
    dest: str
    workdir: str  # where the job starts inside ``dest`` (same place relative to source)
    commit: str | None = None
    dirty: bool = False
    diff_sha256: str | None = None
    files: int = 0
    changed: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def _git(root: Path, *args: str) -> bytes:
    res = subprocess.run(["git", "-C", str(root), *args], capture_output=True)
    if res.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed in {root}: "
                        f"{res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def _git_toplevel(path: Path) -> Path | None:
    if shutil.which("git") is None:
        return None
    res = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True)
    return Path(res.stdout.strip()) if res.returncode == 0 else None


def _git_root(workdir: Path) -> Path | None:
    """The git top level above ``workdir`` when it has a commit to archive, else None."""
    top = _git_toplevel(workdir)
    if top is None:
        return None
    res = subprocess.run(["git", "-C", str(top), "rev-parse", "--verify", "-q", "HEAD"],
                         capture_output=True)
    return top.resolve() if res.returncode == 0 else None


def planned_workdir(workdir: Path, dest: Path) -> Path:
    """Where :func:`ship_code` will put ``workdir`` inside ``dest`` (for ``--dryrun``)."""
    workdir = Path(workdir).resolve()
    top = _git_root(workdir) if workdir.is_dir() else None
    return dest / workdir.relative_to(top or workdir)


def ship_code(workdir: Path, dest: Path, *, patterns: tuple[str, ...] = DEFAULT_PATTERNS
              ) -> CodeSnapshot:
    """Copy the code around ``workdir`` into ``dest`` (created; must not exist) and record it.

    Returns the snapshot; ``snapshot.workdir`` is where the job should start.
    """
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise UserError(f"work directory {workdir} does not exist")
    dest = Path(dest)
    if dest.exists():
        raise UserError(f"{dest} already exists; code is shipped into a new folder")
    top = _git_root(workdir)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if top is not None:
        snap = _ship_git(top, tmp)
    else:
        top = workdir
        snap = _ship_copy(workdir, tmp, patterns)
    tmp.rename(dest)  # the folder appears whole or not at all
    snap.dest = str(dest)
    snap.workdir = str(dest / workdir.relative_to(top))
    return snap


def _ship_git(top: Path, dest: Path) -> CodeSnapshot:
    commit = _git(top, "rev-parse", "HEAD").decode().strip()
    archive = _git(top, "archive", "--format=tar", "HEAD")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    # -m: tracked and modified; -o --exclude-standard: untracked, not ignored; -d: deleted.
    modified = _git(top, "ls-files", "-z", "-m").split(b"\0")
    untracked = _git(top, "ls-files", "-z", "-o", "--exclude-standard").split(b"\0")
    deleted = {p for p in _git(top, "ls-files", "-z", "-d").split(b"\0") if p}
    digest = hashlib.sha256(_git(top, "diff", "--binary", "HEAD"))
    changed: list[str] = []
    for raw in sorted({p for p in modified + untracked if p} - deleted):
        rel = raw.decode()
        src = top / rel
        if src.is_dir():  # a nested repository shows as a folder
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
        changed.append(rel)
    for raw in sorted(untracked):
        if raw and (top / raw.decode()).is_file():
            digest.update(b"\0untracked\0" + raw + b"\0" + (top / raw.decode()).read_bytes())
    for raw in sorted(deleted):
        (dest / raw.decode()).unlink(missing_ok=True)
        changed.append(raw.decode())
    dirty = bool(changed)
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    return CodeSnapshot(method="git", source=str(top), dest="", workdir="", commit=commit,
                        dirty=dirty, diff_sha256=digest.hexdigest() if dirty else None,
                        files=files, changed=changed)


def _ship_copy(root: Path, dest: Path, patterns: tuple[str, ...]) -> CodeSnapshot:
    digest = hashlib.sha256()
    files = 0
    chosen: set[Path] = set()
    for pattern in patterns:
        chosen.update(p for p in root.rglob(pattern) if p.is_file())
    for src in sorted(chosen):
        rel = src.relative_to(root)
        if any(part.startswith(".") or part in _SKIP_DIRS for part in rel.parts[:-1]):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        digest.update(str(rel).encode() + b"\0" + src.read_bytes() + b"\0")
        files += 1
    return CodeSnapshot(method="copy", source=str(root), dest="", workdir="",
                        diff_sha256=digest.hexdigest(), files=files)


def write_snapshot(job_dir: Path, snap: CodeSnapshot) -> Path:
    """Record ``snap`` as ``JOB_DIR/code.json`` (atomically)."""
    path = Path(job_dir) / CODE_FILE
    atomic_write_text(path, snap.to_json())
    return path
