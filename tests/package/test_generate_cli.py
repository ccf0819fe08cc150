"""`stoker generate text` through the real CLI: streaming, samples, prompt files (JSONL out),
stop strings, the RNN, Ctrl-C, and bad input (exit 2, nothing printed to stdout)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from train_helpers import run_cli

pytestmark = pytest.mark.integration


def _gen(stoker_cmd, ckpt: Path, *args: str, check: bool = True):
    return run_cli(stoker_cmd, "generate", "text", "--checkpoint", str(ckpt), *args, check=check)


def test_prompts_file_samples_jsonl_and_stop(stoker_cmd, gpt_run: Path, tmp_path: Path) -> None:
    plain = tmp_path / "prompts.txt"
    plain.write_text("def \nclass \n\nreturn \n")
    r = _gen(stoker_cmd, gpt_run, "--prompts-file", str(plain), "--num-samples", "2",
             "-n", "12", "-t", "1.0")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["prompt"], x["sample"]) for x in rows] == [
        (p, s) for p in ("def ", "class ", "return ") for s in (0, 1)]
    assert all(x["tokens"] <= 12 and x["finish"] in ("length", "eos") for x in rows)
    jl = tmp_path / "prompts.jsonl"
    jl.write_text('{"prompt": "def "}\n"class "\n')
    greedy = _gen(stoker_cmd, gpt_run, "--prompts-file", str(jl), "-n", "12", "-t", "0")
    texts = [json.loads(x)["text"] for x in greedy.stdout.splitlines()]
    single = _gen(stoker_cmd, gpt_run, "-p", "class ", "-n", "12", "-t", "0")
    assert single.stdout == "class " + texts[1] + "\n"  # batched == alone
    # stop: the text ends right before the first occurrence of the stop string
    stop = texts[0][3:5]
    cut = _gen(stoker_cmd, gpt_run, "-p", "def ", "-n", "12", "-t", "0", "--stop", stop)
    assert cut.stdout == "def " + texts[0][: texts[0].find(stop)] + "\n"


def test_stream_equals_batch_output_and_rnn_generates(stoker_cmd, gpt_run: Path,
                                                      rnn_run: Path) -> None:
    a = _gen(stoker_cmd, gpt_run, "-p", "def ", "-n", "40", "-t", "0.8", "--stream")
    b = _gen(stoker_cmd, gpt_run, "-p", "def ", "-n", "40", "-t", "0.8", "--no-stream")
    assert a.stdout == b.stdout and a.stdout.startswith("def ")
    r = _gen(stoker_cmd, rnn_run, "-p", "def ", "-n", "20", "--num-samples", "2",
             "--format", "jsonl")
    assert len(r.stdout.splitlines()) == 2


def test_ctrl_c_during_a_stream_exits_130(stoker_cmd, rnn_run: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*stoker_cmd, "generate", "text", "--checkpoint", str(rnn_run),
                             "-p", "def ", "-n", "10000000", "--stream", "--ignore-eos"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = proc.stdout.read(8)  # streaming has started
        assert first.startswith(b"def ")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"interrupted" in err


@pytest.mark.parametrize("args,expect", [
    (["-p", "def \u00e9\u00df"], "'\u00df', '\u00e9'"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--temperature", "-0.5"], "--temperature must be >= 0"),
    (["--prompts-file", "/nonexistent/prompts.txt"], "does not exist"),
])
def test_bad_generate_input(stoker_cmd, gpt_run: Path, args: list[str], expect: str) -> None:
    r = _gen(stoker_cmd, gpt_run, *args, check=False)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and r.stdout == "" and "Traceback" not in r.stderr
