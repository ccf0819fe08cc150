"""The README's examples run as written.

Python blocks marked ``<!-- readme-test -->`` are executed in a scratch directory; the
config and entrypoint command lines are run through the real CLI, expecting exit 2 where the
README's comment says so and 0 otherwise.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

PY_BLOCKS = re.findall(r"<!-- readme-test -->\n```python\n(.*?)```", README, flags=re.S)
# bash blocks marked the same way run as a session: each command line in turn, one scratch dir
SESSIONS = re.findall(r"<!-- readme-test -->\n```bash\n(.*?)```", README, flags=re.S)
CLI_PREFIXES = ("stoker config ", "stoker recipes", "python examples/")


def _cli_lines() -> list[str]:
    lines = []
    for block in re.findall(r"(?<!<!-- readme-test -->\n)```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            if line.startswith(CLI_PREFIXES):
                lines.append(line)
    return lines


def test_readme_has_examples_to_check() -> None:
    assert len(PY_BLOCKS) >= 3 and len(_cli_lines()) >= 8


@pytest.mark.integration
@pytest.mark.parametrize("code", PY_BLOCKS, ids=[f"python{i}" for i in range(len(PY_BLOCKS))])
def test_python_example_runs(code: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.integration
def test_config_and_entrypoint_command_lines_run(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("stoker"))
    for line in _cli_lines():
        command, _, comment = line.partition("#")
        argv = shlex.split(command)
        argv = [str(REPO / a) if a.startswith("examples/") else a for a in argv]
        argv = [exe if a == "stoker" else sys.executable if a == "python" else a for a in argv]
        expected = 2 if "exit 2" in comment else 0
        if "&&" in argv:  # "A && B": run both in order
            i = argv.index("&&")
            parts = [argv[:i], [sys.executable if a == "python" else a for a in argv[i + 1:]]]
        else:
            parts = [argv]
        for part in parts:
            proc = subprocess.run(part, cwd=tmp_path, capture_output=True, text=True,
                                  env=dict(os.environ), timeout=120)
            assert proc.returncode == expected, f"{line}\n{proc.stdout}\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, line


@pytest.mark.integration
@pytest.mark.parametrize("block", SESSIONS, ids=[f"session{i}" for i in range(len(SESSIONS))])
def test_bash_session_runs(block: str, tmp_path: Path) -> None:
    """A marked bash block, typed line by line as a new user would (``examples/`` paths are
    the repository's, as in a checkout)."""
    exe = str(Path(sys.executable).with_name("stoker"))
    ran = 0
    for line in block.splitlines():
        command = line.partition("  #")[0].strip()
        if not command or command.startswith("#"):
            continue
        argv = [str(REPO / a) if a.startswith("examples") else a for a in shlex.split(command)]
        argv = [exe if a == "stoker" else sys.executable if a == "python" else a for a in argv]
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                              env=dict(os.environ), timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, line
        ran += 1
    assert ran >= 2
