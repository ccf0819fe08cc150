"""Hostile config files through the real `stoker config show/validate`: an alias bomb, an
alias cycle and over-deep nesting are refused fast (exit 2, file named, a fix offered)
instead of hanging, eating memory or printing a RecursionError traceback."""
from __future__ import annotations

import resource
import subprocess

import pytest

pytestmark = pytest.mark.integration


def _limit_memory() -> None:
    # A regression must fail this test, not take the machine's memory with it.
    gib = 2 * 1024**3
    resource.setrlimit(resource.RLIMIT_AS, (gib, gib))


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, preexec_fn=_limit_memory)


def _bomb(levels: int = 9) -> str:
    names = [chr(ord("a") + i) for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * 9) + "]"]
    for prev, name in zip(names, names[1:]):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _deep(fmt: str, levels: int) -> str:
    nest = "[" * levels + "]" * levels
    return {"yaml": f"a: {nest}\n", "json": f'{{"a": {nest}}}', "toml": f"a = {nest}\n"}[fmt]


CASES = {
    "bomb.yaml": (_bomb(), ["bomb.yaml", "alias bomb", "expand", "interpolations"]),
    "cycle.yaml": ("a: &a [1, *a]\n", ["cycle.yaml:1", "refers to its own anchor"]),
    "aliased-deep.yaml": (
        "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [[[*a{i - 1}]]]\n" for i in range(1, 40)),
        ["aliased-deep.yaml", "nested more than 100 levels"]),
    "deep.yaml": (_deep("yaml", 5000), ["deep.yaml", "nest"]),
    "deep.json": (_deep("json", 100_000), ["deep.json", "nested more than 100 levels"]),
    "deep.toml": (_deep("toml", 100_000), ["deep.toml", "nested more than 100 levels"]),
}


@pytest.mark.parametrize("command", ["show", "validate"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_config_is_refused_fast(stoker_cmd, tmp_path, name, command):
    text, needles = CASES[name]
    (tmp_path / name).write_text(text)
    r = run([*stoker_cmd, "config", command, name], tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_hostile_override_file_is_refused(stoker_cmd, tmp_path):
    """The same bound holds for a value read from a file with key=@file."""
    (tmp_path / "bomb.yaml").write_text(_bomb())
    r = run([*stoker_cmd, "config", "validate", "example-linear", "optim=@bomb.yaml"], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "alias bomb" in r.stderr


def test_anchors_within_bounds_still_load(stoker_cmd, tmp_path):
    """Ordinary anchors (a shared block re-used a few times) are not mistaken for a bomb."""
    (tmp_path / "ok.yaml").write_text(
        "base: &base {lr: 0.1, betas: [0.9, 0.99]}\n"
        "one: *base\n"
        "two: {<<: *base, lr: 0.2}\n"
        "grid: &g [[1, 2], [3, 4]]\n"
        "again: [*g, *g, *g]\n")
    r = run([*stoker_cmd, "config", "show", "ok.yaml", "--raw"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "lr: 0.2" in r.stdout and "betas" in r.stdout
