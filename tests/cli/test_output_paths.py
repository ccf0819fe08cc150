"""Every `stoker` command that takes a registry or output path, through the real CLI, with
a path that is a plain file, a path under a missing parent, and a path on a full file
system (a real small tmpfs, as root): never a traceback, always the right exit code
(2 bad input, 1 a failed run, 0 fine), and nothing half-written."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests._shared.engines import no_engine
from tests._shared.full_disk import fill, small_disk

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import tiny_corpus_text  # noqa: E402


@dataclass(frozen=True)
class Ctx:
    corpus: Path  # a small text file
    data: Path  # a prepared char dataset (for train)
    scratch: Path  # where commands may put side outputs


@dataclass(frozen=True)
class Command:
    name: str
    argv: Callable[[Path, Ctx], list[str]]
    target: str  # "dir": the path is a directory to create; else the suffix of a file to write
    missing: int  # exit code under a missing parent (0: created; 2: nothing there to read)
    full: int | None  # exit code on a full disk (None: not walked, with the reason below)
    writes: bool = False  # on a full disk, the target must not exist afterwards


def _train(extra: list[str], ctx: Ctx) -> list[str]:
    return ["train", "gpt-char", f"data.path={ctx.data}", "model.n_layers=1", "model.dim=16",
            "model.n_heads=2", "model.n_kv_heads=1", "data.seq_len=16", "data.batch_size=4",
            "trainer.max_steps=2", "trainer.eval_every=null", "loggers=[jsonl]",
            "~callbacks.samples", "register_artifact=false", "trainer.num_threads=1", *extra]


COMMANDS = [
    Command("artifacts list", lambda t, c: ["artifacts", "list", "--registry", str(t)], "dir", 0, 0),
    Command("artifacts show", lambda t, c: ["artifacts", "show", "art://ds:v1", "--registry", str(t)],
            "dir", 2, 0),
    Command("artifacts lineage", lambda t, c: ["artifacts", "lineage", "art://ds:v1", "--registry", str(t)],
            "dir", 2, 0),
    Command("artifacts verify", lambda t, c: ["artifacts", "verify", "art://ds:v1", "--registry", str(t)],
            "dir", 2, 0),
    Command("artifacts alias", lambda t, c: ["artifacts", "alias", "art://ds:v1", "prod", "--registry", str(t)],
            "dir", 2, 1),
    Command("artifacts gc", lambda t, c: ["artifacts", "gc", "--older-than", "0", "--registry", str(t)],
            "dir", 0, 0),
    Command("artifacts rm", lambda t, c: ["artifacts", "rm", "art://ds:v1", "--registry", str(t)],
            "dir", 2, 1),
    Command("data prepare -o", lambda t, c: ["data", "prepare", "-i", str(c.corpus), "-o", str(t), "-q"],
            "dir", 0, 1, writes=True),
    Command("data prepare --register",
            lambda t, c: ["data", "prepare", "-i", str(c.corpus), "-o", str(c.scratch / f"ds-{t.parent.name}"),
                          "-q", "--register", "ds2", "--registry", str(t)], "dir", 0, 1),
    Command("data train-tokenizer", lambda t, c: ["data", "train-tokenizer", "-i", str(c.corpus), "-o", str(t),
                                                 "--type", "char", "-q"], "dir", 0, 1, writes=True),
    Command("train output_dir", lambda t, c: _train([f"output_dir={t}", "--yes"], c), "dir", 0, 1, writes=True),
    Command("train --to-yaml", lambda t, c: _train(["--to-yaml", str(t)], c), ".yaml", 0, 1, writes=True),
    Command("train --to-json", lambda t, c: _train(["--to-json", str(t)], c), ".json", 0, 1, writes=True),
    # the demo prepares the built-in corpus and trains for minutes: only the refusal is walked
    Command("demo --output-dir", lambda t, c: ["demo", "--output-dir", str(t), "--max-steps", "1"],
            "dir", 0, None),
]
IDS = [c.name for c in COMMANDS]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    from stoker.data.prepare import prepare

    root = tmp_path_factory.mktemp("paths")
    corpus = root / "corpus.txt"
    corpus.write_text(tiny_corpus_text()[:6000], encoding="utf-8")
    data = prepare([str(corpus)], root / "data", type="char", split_ratios=(0.9, 0.1, 0.0), workers=1)
    (root / "scratch").mkdir()
    return Ctx(corpus, data, root / "scratch")


def stoker(stoker_cmd, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.run([*stoker_cmd, *argv], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)


def _check(r: subprocess.CompletedProcess, code: int, what: str) -> None:
    assert "Traceback" not in r.stderr, f"{what}: traceback\n{r.stderr}"
    assert r.returncode == code, f"{what}: exit {r.returncode}, expected {code}\n{r.stderr}"
    if code:
        assert "error:" in r.stderr, f"{what}: no message\n{r.stderr}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=IDS)
def test_path_is_a_plain_file(stoker_cmd, tmp_path, ctx, cmd):
    plain = tmp_path / "plain.txt"
    plain.write_text("keep me\n")
    target = plain if cmd.target == "dir" else plain / f"config{cmd.target}"
    r = stoker(stoker_cmd, cmd.argv(target, ctx), tmp_path)
    _check(r, 2, f"{cmd.name} with {target}")
    assert "plain.txt" in r.stderr and ("is a file" in r.stderr or "which is a file" in r.stderr), r.stderr
    assert plain.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]  # nothing else written


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.full is not None],
                         ids=[c.name for c in COMMANDS if c.full is not None])
def test_missing_parent(stoker_cmd, tmp_path, ctx, cmd):
    target = tmp_path / "no" / "such" / ("place" if cmd.target == "dir" else f"config{cmd.target}")
    r = stoker(stoker_cmd, cmd.argv(target, ctx), tmp_path)
    _check(r, cmd.missing, f"{cmd.name} with {target}")
    if cmd.missing == 0 and cmd.writes:
        assert target.exists()


def test_full_disk(stoker_cmd, tmp_path, ctx):
    """One real full tmpfs for every command: a registry with one version on it, then filled."""
    with small_disk(tmp_path / "disk", 3072) as disk:
        if disk is None:
            no_engine("a small tmpfs", "mounting one needs root and mount rights; the "
                      "full-disk walk did not run")
        reg = disk / "reg"
        r = stoker(stoker_cmd, ["data", "prepare", "-i", str(ctx.corpus), "-o", str(tmp_path / "ds"),
                                "-q", "--register", "ds", "--registry", str(reg)], tmp_path)
        assert r.returncode == 0, r.stderr
        fill(disk)
        before = sorted(p.name for p in disk.iterdir())
        failures = []
        for cmd in [c for c in COMMANDS if c.full is not None]:
            slug = cmd.name.replace(" ", "_").replace("-", "")
            if cmd.name.startswith("artifacts") or "--register" in cmd.name:
                target = reg
            else:
                target = disk / (slug if cmd.target == "dir" else f"{slug}{cmd.target}")
            r = stoker(stoker_cmd, cmd.argv(target, ctx), tmp_path)
            try:
                _check(r, cmd.full, f"{cmd.name} on a full disk ({target})")
                if cmd.writes:
                    assert not target.exists(), f"{cmd.name} left {target} half-written"
            except AssertionError as e:
                failures.append(str(e))
        assert not failures, "\n\n".join(failures)
        # nothing half-written: only the registry and the filler are on the disk, and the
        # registry still shows its one version intact
        leftovers = sorted(p.name for p in disk.iterdir())
        assert leftovers == before, leftovers
        (disk / "filler").unlink()
        r = stoker(stoker_cmd, ["artifacts", "verify", "art://ds:v1", "--registry", str(reg)], tmp_path)
        assert r.returncode == 0, r.stderr
        r = stoker(stoker_cmd, ["artifacts", "list", "--registry", str(reg), "--json"], tmp_path)
        assert '"ds2"' not in r.stdout  # the failed publish left no visible version
