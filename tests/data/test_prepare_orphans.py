"""`stoker data prepare` leaves no worker behind when its process is killed.

SIGINT reaches the whole process group; SIGTERM or kill -9 of the parent alone used to
orphan every worker. Through the real CLI: start a prepare with 2 workers, kill the parent
once its workers run, then count the processes that were its children."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stoker.data.corpus import default_corpus_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("orphans")
    for i, f in enumerate(default_corpus_files()[:150]):
        (d / f"{i:04d}.py").write_bytes(f.read_bytes())
    return d


def _alive(procs: list[psutil.Process]) -> list[int]:
    """The pids of ``procs`` still running (a zombie waiting for its reaper is dead)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_end_with_their_parent(stoker_cmd, tmp_path, corpus, cli_env, sig) -> None:
    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [*stoker_cmd, "data", "prepare", "--input-path", str(corpus), "--output-dir", str(out),
         "--type", "char", "--shard-size-mb", "0.02", "--workers", "2", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env)
    parent = psutil.Process(proc.pid)
    children: list[psutil.Process] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            children = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        if len(children) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "prepare ended before its workers could be seen; more data"
    assert len(children) >= 2, children
    time.sleep(0.3)  # the workers are past their start-up and at work
    children = parent.children(recursive=True)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 5
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _alive(children)
    for pid in left:  # do not leave them to the next test
        psutil.Process(pid).kill()
    assert left == [], f"{len(left)} worker(s) outlived their parent ({sig.name}): {left}"
