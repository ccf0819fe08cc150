"""An entrypoint task's job reads the launcher's validated arguments
(``config.resolved.json``) instead of composing ``config.yaml`` again, and only while they
still describe that exact file and that function's arguments."""
from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stoker.config.schema import SignatureSchema, schema_fingerprint
from stoker.config.validation import check_resolved
from stoker.launch.builders import entrypoint_config
from stoker.launch.resolved import plain_arguments, read_resolved, resolved_path, write_resolved
from tests.launch.cli_helpers import launched_id, stoker

SCRIPT = '''
import dataclasses
import json
import sys
from pathlib import Path

import stoker


@dataclasses.dataclass
class Leaf:
    depth: int = 2


@dataclasses.dataclass
class Sub:
    width: int = 3
    ratio: float = 0.5
    leaf: Leaf = dataclasses.field(default_factory=Leaf)  # exported with its _target_


@stoker.entrypoint
def work(n: int = 1, tag: str = "a", ratio: float = 1.0, out: Path = Path("o.txt"),
         sub: Sub = Sub(){extra}):
    print(json.dumps({{"n": n, "tag": tag, "ratio": [type(ratio).__name__, ratio],
                      "out": [type(out).__name__, str(out)], "sub": repr(sub),
                      "composed": "omegaconf" in sys.modules}}), flush=True)


if __name__ == "__main__":
    stoker.main(work)
'''


def _job_command(job: Path) -> list[str]:
    """The job's command line, as command.txt records it (its last shell line)."""
    line = [ln for ln in (job / "command.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")][-1]
    return shlex.split(line.strip())


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_the_job_uses_the_launchers_arguments_until_the_config_or_the_code_changes(
        project: Path, env: dict[str, str]) -> None:
    script = project / "ep.py"
    script.write_text(SCRIPT.format(extra=""))
    args = ["n=5", "tag=x-y", "ratio=2", "out=/tmp/there.txt", "sub.width=7", "sub.leaf.depth=4"]
    here = _run([sys.executable, str(script), *args], project, env)  # composed, in-process
    assert here.returncode == 0, here.stderr
    expected = json.loads(here.stdout)
    assert expected["composed"] and expected["ratio"] == ["float", 2.0]

    launch = stoker(str(script), *args, "executor=detached", "--yes", cwd=project, env=env,
                    python=True)
    assert launch.returncode == 0, launch.stderr
    exp_id = launched_id(launch)
    logs = stoker("exp", "logs", exp_id, "--follow", cwd=project, env=env)
    assert logs.returncode == 0, logs.stderr
    job = Path(env["STOKER_HOME"]) / "experiments" / exp_id / "work"
    resolved = json.loads((job / "config.resolved.json").read_text())
    assert resolved["arguments"]["n"] == 5 and resolved["function"] == "__main__:work"
    assert resolved["arguments"]["sub"]["leaf"]["_target_"] == "__main__.Leaf"
    got = json.loads(logs.stdout)
    # the same typed arguments as composing gives, without composing
    assert {**got, "composed": None} == {**expected, "composed": None}
    assert got["composed"] is False
    assert "composing" not in logs.stderr

    # the job's command line by hand: the same fast path
    again = _run(_job_command(job), project, env)
    assert again.returncode == 0 and json.loads(again.stdout)["composed"] is False, again.stderr

    # config.yaml edited after launch: its checksum no longer matches -> composed, and said
    cfg = job / "config.yaml"
    cfg.write_text(cfg.read_text().replace("n: 5", "n: 9"))
    edited = _run(_job_command(job), project, env)
    assert edited.returncode == 0, edited.stderr
    assert json.loads(edited.stdout)["n"] == 9 and json.loads(edited.stdout)["composed"]
    assert "config.yaml changed after launch" in edited.stderr
    assert "composing" in edited.stderr and "Traceback" not in edited.stderr

    # the function's arguments changed after launch (a new required one): composed again,
    # so the job reports it as bad input instead of calling the function without it
    cfg.write_text(cfg.read_text().replace("n: 9", "n: 5"))
    script.write_text(SCRIPT.format(extra=", *, level: int"))
    changed = _run(_job_command(job), project, env)
    assert "the arguments of __main__:work changed after launch" in changed.stderr
    assert changed.returncode == 2 and "level" in changed.stderr, changed.stderr


@dataclasses.dataclass
class _Inner:
    k: int = 1


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    name: str = "x"


def _fn(a: int = 1, b: str = "${c}", c: str = "z", opt: _Outer = _Outer()) -> None:
    """A function whose config has an interpolation by default."""


def _plain_fn(a: int = 1, c: str = "z", opt: _Outer = _Outer()) -> None:
    """The same without it."""


def _arguments(fn, overrides=()):
    cfg, schema = entrypoint_config(fn, list(overrides))
    problems, resolved = check_resolved(cfg, schema)
    assert not problems
    return plain_arguments(cfg, resolved)


def test_only_plain_configs_get_resolved_arguments() -> None:
    inner = {"_target_": f"{__name__}._Inner", "k": 1}
    assert _arguments(_plain_fn, ["a=3"]) == {"a": 3, "c": "z",
                                              "opt": {"inner": inner, "name": "x"}}
    # ${c} resolves again in the job (its environment, its registry): never pre-resolved
    assert _arguments(_fn) is None
    assert _arguments(_fn, ["b=fixed"]) is not None


def test_plain_arguments_refuses_what_json_does_not_give_back() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": 1})
    assert plain_arguments(cfg, {"a": 1}) == {"a": 1}
    assert plain_arguments(cfg, {"a": (1, 2)}) is None  # a tuple comes back a list
    assert plain_arguments(cfg, {"a": Path("x")}) is None
    assert plain_arguments(cfg, {"a": float("nan")}) is None


def test_read_resolved_checks_file_function_and_schema(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("a: 3\n")
    assert read_resolved(config, _plain_fn) == (None, None)  # none written: compose quietly
    write_resolved(config, _plain_fn, {"a": 3})
    assert resolved_path(config) == tmp_path / "config.resolved.json"
    assert read_resolved(config, _plain_fn) == ({"a": 3}, None)
    arguments, why = read_resolved(config, _fn)
    assert arguments is None and "_plain_fn" in why and "not" in why
    config.write_text("a: 4\n")
    arguments, why = read_resolved(config, _plain_fn)
    assert arguments is None and "changed after launch" in why
    resolved_path(config).write_text("{not json")
    arguments, why = read_resolved(config, _plain_fn)
    assert arguments is None and "cannot be read" in why


def test_schema_fingerprint_follows_names_types_and_nested_fields_not_defaults() -> None:
    def base(a: int = 1, opt: _Outer = _Outer()) -> None: ...

    def other_default(a: int = 2, opt: _Outer = _Outer()) -> None: ...

    def retyped(a: float = 1, opt: _Outer = _Outer()) -> None: ...

    def required(a: int, opt: _Outer = _Outer()) -> None: ...

    # a field added to a nested dataclass of the same name (the same annotation text)
    Sub1 = dataclasses.make_dataclass("Sub", [("k", int, 1)])
    Sub2 = dataclasses.make_dataclass("Sub", [("k", int, 1), ("extra", int, 0)])
    assert repr(Sub1) == repr(Sub2)

    def nested(a=1, opt=None): ...

    def nested_changed(a=1, opt=None): ...

    nested.__annotations__ = {"a": int, "opt": Sub1}  # real classes, not strings
    nested_changed.__annotations__ = {"a": int, "opt": Sub2}

    def fp(fn):
        return schema_fingerprint(SignatureSchema(fn))

    assert fp(base) == fp(other_default)
    assert len({fp(base), fp(retyped), fp(required), fp(nested), fp(nested_changed)}) == 5
