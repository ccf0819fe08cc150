"""`stoker data ...` through the real CLI: determinism, kill-and-resume, every bad input."""
from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stoker.data.corpus import default_corpus_files

pytestmark = pytest.mark.integration


def run(cmd, *args, env=None, timeout=300):
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def same_tree(a: Path, b: Path) -> None:
    """Byte-identical datasets (metadata equal apart from the recorded command)."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for rel in fa:
        if rel.name == "metadata.json":
            ma, mb = (json.loads((x / rel).read_text()) for x in (a, b))
            ma.pop("command"), mb.pop("command")
            assert ma == mb
        else:
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("big")
    for i, f in enumerate(default_corpus_files()[:120]):
        (d / f"{i:04d}.py").write_bytes(f.read_bytes())
    return d


def test_help_is_light(stoker_cmd):
    code = ("import sys; from stoker.cli.app import main\n"
            "try:\n    main(['data', 'prepare', '--help'])\nexcept SystemExit: pass\n"
            "bad = [m for m in ('numpy', 'tokenizers', 'torch', 'pyarrow') if m in sys.modules]\n"
            "print('HEAVY', bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert "--split-ratios" in r.stdout and "--tokenizer-path" in r.stdout


def test_craft_flags_char_and_subword_and_workers_determinism(stoker_cmd, tmp_path, corpus_dir):
    sample = tmp_path / "sample.txt"
    sample.write_text("".join(f.read_text() for f in sorted(corpus_dir.rglob("*.txt"))))
    r = run(stoker_cmd, "data", "prepare", "--input-path", sample, "--output-dir", tmp_path / "c",
            "--type", "char")
    assert r.returncode == 0, r.stderr
    assert "prepared" in r.stdout and "tokens" in r.stdout
    assert "MB/s" in r.stderr  # plain progress lines when not on a TTY
    r = run(stoker_cmd, "data", "train-tokenizer", "--input-path", corpus_dir, "--output-dir",
            tmp_path / "tok", "--type", "bpe", "--vocab-size", "500")
    assert r.returncode == 0, r.stderr
    outs = []
    for j in (1, 2):
        out = tmp_path / f"s{j}"
        r = run(stoker_cmd, "data", "prepare", "--input-path", corpus_dir, "--output-dir", out,
                "--type", "subword", "--tokenizer-path", tmp_path / "tok", "--split-ratios",
                "0.9,0.05,0.05", "--workers", j, "--shard-size-mb", "0.05")
        assert r.returncode == 0, r.stderr
        outs.append(out)
    same_tree(*outs)
    md = json.loads((outs[0] / "metadata.json").read_text())
    assert "--workers 1" in md["command"] and md["tokenizer"]["type"] == "bpe"
    # a finished output is recognised: re-running is a no-op, not a redo
    before = (outs[0] / "metadata.json").stat().st_mtime_ns
    r = run(stoker_cmd, "data", "prepare", "--input-path", corpus_dir, "--output-dir", outs[0],
            "--type", "subword", "--tokenizer-path", tmp_path / "tok", "--shard-size-mb", "0.05")
    assert r.returncode == 0 and (outs[0] / "metadata.json").stat().st_mtime_ns == before


def test_kill_mid_way_then_resume(stoker_cmd, tmp_path, big_corpus, bpe_tokenizer_dir, cli_env):
    args = ["data", "prepare", "--input-path", big_corpus, "--type", "subword", "--tokenizer-path",
            bpe_tokenizer_dir, "--shard-size-mb", "0.03"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*stoker_cmd, *map(str, args), "--output-dir", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env)
    work = out / ".stoker-prepare"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if work.is_dir() and len(list(work.glob("unit-*.json"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "prepare finished before it could be killed; make the corpus bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list(work.glob("unit-*.json")))
    total = json.loads((work / "plan.json").read_text())["units"]
    assert 3 <= committed < total
    assert not (out / "metadata.json").exists()  # unfinished is never taken for finished
    from stoker.data.datasets import TokenWindowDataset
    from stoker.errors import DataError

    with pytest.raises(DataError, match="unfinished"):
        TokenWindowDataset(out, seq_len=8)
    # a kill during a shard write leaves the atomic writer's temp file (whether this kill
    # did depends on timing): the resume removes it, like this planted one
    (out / "train").mkdir(exist_ok=True)
    (out / "train" / ".shard-00999.bin.x1y2z3.tmp").write_bytes(b"half a shard")
    r = run(stoker_cmd, *args, "--output-dir", out, "--workers", "2", env=cli_env)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr
    ref = tmp_path / "clean"
    r = run(stoker_cmd, *args, "--output-dir", ref, "--workers", "2", env=cli_env)
    assert r.returncode == 0, r.stderr
    same_tree(out, ref)


_MANY = r"""
import json, sys
from stoker.cli.app import main
for args in json.loads(sys.argv[1]):
    sys.stderr.write("@@CASE\n"); sys.stderr.flush()
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    sys.stderr.flush()
    print(code, flush=True)
"""


def run_many(cases: list[list]) -> list[tuple[int, str]]:
    """Run several `stoker ...` command lines through the real CLI entry point in one Python
    process (one interpreter start instead of one per case): (exit code, stderr) each."""
    argvs = [[str(a) for a in args] for args in cases]
    r = subprocess.run([sys.executable, "-c", _MANY, json.dumps(argvs)], capture_output=True,
                       text=True, timeout=300)
    codes = [int(x) for x in r.stdout.split()]
    errs = r.stderr.split("@@CASE\n")[1:]
    assert len(codes) == len(errs) == len(cases), r.stdout + r.stderr
    return list(zip(codes, errs))


def _bad(stoker_cmd, *args):
    r = run(stoker_cmd, "data", "prepare", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    return r.stderr


def test_every_bad_input_exits_2_and_writes_nothing(stoker_cmd, tmp_path, corpus_dir, bpe_tokenizer_dir):
    out = tmp_path / "out"
    txt = str(corpus_dir / "part0")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    (tmp_path / "emptydir").mkdir()
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"text": "ok"}\n{"text": "ok"}\n{oops\n{"text": "ok"}\n')
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"text": "ok"}\n{"body": "x"}\n')
    from stoker.data.tokenizers import CharTokenizer

    CharTokenizer([chr(c) for c in range(0x10000, 0x10000 + 66000)] + list("abc")).save(tmp_path / "bigtok")

    cases = [
        (["--input-path", empty], "empty"),
        (["--input-path", tmp_path / "missing.txt"], "no such file"),
        (["--input-path", tmp_path / "emptydir"], "no readable files"),
        (["--input-path", str(tmp_path / "*.nothing")], "matches no file"),
        (["--input-path", txt, "--type", "word"], "unknown --type 'word'"),
        (["--input-path", txt, "--split-ratios", "0.8,0.1"], "sum to 0.9"),
        (["--input-path", txt, "--split-ratios", "1.1,-0.05,-0.05"], "must not be negative"),
        (["--input-path", txt, "--split-ratios", "nan,0.5,0.5"], "must be a finite number"),
        (["--input-path", txt, "--split-ratios", "0.5,inf,0.5"], "must be a finite number"),
        (["--input-path", bad_jsonl], "bad.jsonl:3: not valid JSON"),
        (["--input-path", nofield], "nofield.jsonl:2: no field 'text'"),
        (["--input-path", txt, "--tokenizer-path", tmp_path / "bigtok", "--dtype", "uint16"],
         "more than uint16"),
        (["--input-path", txt, "--type", "subword", "--tokenizer-path", tmp_path / "nope"],
         "does not exist"),
        (["--input-path", txt, "--type", "subword"], "needs --tokenizer-path"),
    ]
    # two through the `stoker` executable, the rest through the same entry point in one process
    for args, msg in cases[:2]:
        err = _bad(stoker_cmd, *args, "--output-dir", out)
        assert msg in err, (args, err)
        assert not out.exists(), f"{args} left {list(out.rglob('*'))}"
    outs = [tmp_path / f"out{i}" for i in range(len(cases))]
    results = run_many([["data", "prepare", *args, "--output-dir", o] for (args, _), o in zip(cases, outs)][2:])
    for (args, msg), o, (code, err) in zip(cases[2:], outs[2:], results):
        assert code == 2 and "error:" in err and "Traceback" not in err, (args, code, err)
        assert msg in err, (args, err)
        assert not o.exists(), f"{args} left {list(o.rglob('*'))}"

    # --skip-bad-lines continues and reports the count
    r = run(stoker_cmd, "data", "prepare", "--input-path", bad_jsonl, "--output-dir", out,
            "--skip-bad-lines", "--split-ratios", "1")
    assert r.returncode == 0, r.stderr
    assert "skipped 1 bad line" in r.stdout
    # an output dir holding a different dataset is refused unless --overwrite
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    err = _bad(stoker_cmd, "--input-path", txt, "--output-dir", out)
    assert "already holds a different prepared dataset" in err and "--overwrite" in err
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = run(stoker_cmd, "data", "prepare", "--input-path", txt, "--output-dir", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    # a directory with unrelated files is never touched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    err = _bad(stoker_cmd, "--input-path", txt, "--output-dir", tmp_path / "mine", "--overwrite")
    assert "not a stoker dataset" in err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


def test_train_tokenizer_bad_input(stoker_cmd, tmp_path, corpus_dir):
    r = run(stoker_cmd, "data", "train-tokenizer", "--input-path", corpus_dir, "--output-dir",
            tmp_path / "t", "--type", "wordpiece")
    assert r.returncode == 2 and "unknown --type" in r.stderr and not (tmp_path / "t").exists()
    r = run(stoker_cmd, "data", "train-tokenizer", "--input-path", corpus_dir / "part0", "--output-dir",
            tmp_path / "sp", "--type", "unigram", "--vocab-size", "400", "--library", "sentencepiece")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "sp" / "tokenizer.model").is_file()


def test_register_pipes_the_artifact_and_shows_in_registry(stoker_cmd, tmp_path, corpus_dir, cli_env):
    reg = tmp_path / "reg"
    txt = corpus_dir / "part0"
    r = run(stoker_cmd, "data", "prepare", "--input-path", txt, "--output-dir", tmp_path / "d",
            "--register", "x", "--registry", reg, "--quiet", env=cli_env)
    assert r.returncode == 0, r.stderr
    assert "prepared" in r.stderr  # human lines go to stderr when stdout is piped
    r2 = run(stoker_cmd, "artifacts", "show", "art://x:latest", "--registry", reg, env=cli_env)
    assert r2.returncode == 0, r2.stderr
    assert "x:v1" in r2.stdout and "PretrainBlendsArtifact" in r2.stdout
    # prepare's stdout is exactly what a next step's `load()` reads from stdin
    code = ("import json, sys; from stoker.artifacts.types import PretrainBlendsArtifact\n"
            "a = PretrainBlendsArtifact.load()\n"
            "print(json.dumps([a.uri, a.total_tokens, a.split_tokens, str(a.train_path)]))")
    r3 = subprocess.run([sys.executable, "-c", code], input=r.stdout, capture_output=True,
                        text=True, env=cli_env)
    assert r3.returncode == 0, r3.stderr
    uri, total, splits, train = json.loads(r3.stdout)
    md = json.loads((tmp_path / "d" / "metadata.json").read_text())
    assert uri == "art://x:v1" and total == md["total_tokens"]
    assert splits == {k: v["tokens"] for k, v in md["splits"].items()}
    assert train.endswith("train")
    # a bad name is refused before anything is prepared or registered
    r4 = run(stoker_cmd, "data", "prepare", "--input-path", txt, "--output-dir", tmp_path / "e",
             "--register", "../evil", "--registry", reg, env=cli_env)
    assert r4.returncode == 2, (r4.stdout, r4.stderr)
    assert "Invalid artifact name" in r4.stderr and "Traceback" not in r4.stderr
    assert not (tmp_path / "e").exists()
    assert not any("evil" in str(p) for p in tmp_path.rglob("*"))
    r5 = run(stoker_cmd, "artifacts", "list", "--registry", reg, env=cli_env)
    assert r5.returncode == 0 and "evil" not in r5.stdout and "x" in r5.stdout


def test_output_inside_the_input_directory_reruns_as_already_prepared(stoker_cmd, tmp_path, corpus_dir):
    """`-i corpus/ -o corpus/prepared`: the output is left out of the input listing, so the
    re-run finds its own finished dataset ("already prepared", exit 0, nothing rewritten)
    instead of reading its metadata.json and shards as input."""
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_dir / "part0", corpus)
    out = corpus / "prepared"
    first = run(stoker_cmd, "data", "prepare", "-i", corpus, "-o", out, "-q")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("prepared ")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for spec in (corpus, str(corpus / "**")):  # a directory and a recursive glob
        again = run(stoker_cmd, "data", "prepare", "-i", spec, "-o", out, "-q")
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"already prepared {out}:"), again.stdout
        assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # the output's own files named directly are still refused as input
    r = run(stoker_cmd, "data", "prepare", "-i", out / "metadata.json", "-o", out, "-q")
    assert r.returncode == 2 and "lies inside the output directory" in r.stderr
