"""Which code made a run: the user's project, told apart from stoker's own.

A run used to record "the code" as the git checkout of the working directory, and when
that was no repository, stoker's own checkout: a user whose project is a plain folder got
stoker's commit as the provenance of their model. Now:

- ``code`` is the user's: the git repository of the working directory, and that of every
  file of their own code the run loaded (the modules of ``imports:``/``--import``, the
  modules their ``_target_`` nodes name, the entrypoint script), each with its commit, the
  dirty flag and a SHA-256 of the uncommitted diff (``git diff HEAD``); each of those files
  that no repository tracks is hashed itself (``files``); ``sha256`` is one hash over all
  of it, the key that changes exactly when the user's code does.
- ``stoker`` is stoker's own: its version, and its commit and dirty flag when it runs from
  a git checkout (a developer's); never taken for the user's code.

Installed packages (site-packages) and stoker itself are not "the user's code": their
versions are in ``env.json``'s ``packages``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["code_info", "stoker_info", "user_code_files"]

_MAX_FILES = 2000  # a package named in imports: is hashed file by file, up to this many
_STOKER_PKG = Path(__file__).resolve().parents[1]  # .../stoker


def _git(cwd: Path, *args: str) -> str | None:
    """``git ARGS`` in ``cwd``: its stdout, or None outside a repository (or without git)."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


@lru_cache(maxsize=64)
def _repo_root(directory: Path) -> Path | None:
    out = _git(directory, "rev-parse", "--show-toplevel")
    return Path(out.strip()) if out and out.strip() else None


def _tracked(root: Path, path: Path) -> bool:
    return _git(root, "ls-files", "--error-unmatch", "--", str(path)) is not None


@lru_cache(maxsize=16)
def _repo_record(root: Path) -> dict[str, Any]:
    """Commit, dirty flag and the SHA-256 of the uncommitted changes of one repository."""
    commit = (_git(root, "rev-parse", "HEAD") or "").strip() or None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    diff = _git(root, "diff", "HEAD", "--binary") if commit else None
    dirty = bool(status.strip()) if status is not None else None
    return {"root": str(root), "commit": commit, "dirty": dirty,
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if dirty and diff else None}


def _installed_roots() -> tuple[Path, ...]:
    roots = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return tuple(Path(r).resolve() for r in roots if r)


def _is_users(path: Path) -> bool:
    """A file of the user's own code: not stoker's, not an installed package or the stdlib."""
    if path.is_relative_to(_STOKER_PKG):
        return False
    return not any(path.is_relative_to(r) for r in _installed_roots())


def _module_files(name: str) -> list[Path]:
    """The source files of module ``name`` (all ``*.py`` of a package), without importing it
    when it is not imported yet."""
    mod = sys.modules.get(name)
    origin = getattr(mod, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return []
        origin = spec.origin if spec is not None and spec.has_location else None
    if not origin or not str(origin).endswith(".py"):
        return []
    path = Path(origin).resolve()
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))[:_MAX_FILES]
    return [path]


def _target_modules(tree: Any, out: set[str]) -> set[str]:
    """The modules named by the ``_target_`` nodes of a config tree."""
    if isinstance(tree, dict):
        target = tree.get("_target_")
        if isinstance(target, str) and "." in target:
            out.add(target.rsplit(".", 1)[0])
        for v in tree.values():
            _target_modules(v, out)
    elif isinstance(tree, list):
        for v in tree:
            _target_modules(v, out)
    return out


def _entry_script() -> Path | None:
    """The user's script when the process runs one (``python train.py``), not the
    ``stoker`` command, ``python -m stoker`` or an interpreter prompt."""
    main = sys.modules.get("__main__")
    f = getattr(main, "__file__", None)
    if not f or not str(f).endswith(".py"):
        return None
    path = Path(f).resolve()
    return path if path.is_file() and _is_users(path) else None


def user_code_files(config: dict[str, Any] | None = None) -> list[Path]:
    """The files of the user's code this run loaded (see the module docstring)."""
    names: set[str] = set()
    imports = (config or {}).get("imports") or []
    names.update([imports] if isinstance(imports, str) else [str(m) for m in imports])
    _target_modules(config or {}, names)
    files: list[Path] = []
    for name in sorted(names):
        if name.split(".")[0] in ("stoker", "torch"):
            continue
        files.extend(p for p in _module_files(name) if _is_users(p))
    script = _entry_script()
    if script is not None:
        files.append(script)
    return sorted(set(files))


def _sha256_file(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def code_info(cwd: str | os.PathLike[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The user's code of a run started in ``cwd`` with ``config`` (its record)."""
    repos: dict[str, dict[str, Any]] = {}
    cwd_root = _repo_root(Path(cwd).resolve())
    if cwd_root is not None:
        repos[str(cwd_root)] = _repo_record(cwd_root)
    files: dict[str, str | None] = {}
    for path in user_code_files(config):
        root = _repo_root(path.parent)
        if root is not None and _tracked(root, path):
            repos.setdefault(str(root), _repo_record(root))
        else:  # no repository describes this file: its content does
            files[str(path)] = _sha256_file(path)
    summary = hashlib.sha256()
    for root in sorted(repos):
        r = repos[root]
        summary.update(f"repo {root} {r['commit']} {r['diff_sha256']}\n".encode())
    for path in sorted(files):
        summary.update(f"file {path} {files[path]}\n".encode())
    return {"repos": [repos[k] for k in sorted(repos)], "files": files,
            "sha256": summary.hexdigest() if repos or files else None}


def primary_git(code: dict[str, Any], cwd: str | os.PathLike[str]) -> dict[str, Any]:
    """``env.json``'s ``git``: the working directory's repository, else the first one of
    the user's code; all None when the user's code is in none (never stoker's checkout)."""
    cwd_path = Path(cwd).resolve()
    repos = code.get("repos") or []
    for r in repos:
        if cwd_path.is_relative_to(Path(r["root"])):
            return {k: r[k] for k in ("commit", "dirty", "root")}
    if repos:
        return {k: repos[0][k] for k in ("commit", "dirty", "root")}
    return {"commit": None, "dirty": None, "root": None}


def stoker_info() -> dict[str, Any]:
    """stoker's own version, and its checkout's commit when it runs from one."""
    from stoker import __version__

    out: dict[str, Any] = {"version": __version__, "commit": None, "dirty": None, "root": None}
    init = _STOKER_PKG / "__init__.py"
    root = _repo_root(_STOKER_PKG)
    if root is not None and _tracked(root, init):  # a checkout of stoker, not a venv in a repo
        rec = _repo_record(root)
        out.update(commit=rec["commit"], dirty=rec["dirty"], root=rec["root"])
    return out
