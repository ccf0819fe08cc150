"""One writer per run directory: the lock, its owner record, and two real `stoker train`
processes racing for one `output_dir` (item 1 of issue 14)."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import read_metrics, run_cli, tiny_overrides

from stoker.train.checkpoint import find_latest
from stoker.train.run_lock import LOCK_FILE, OWNER_FILE, RunDirBusy, RunDirLock, read_owner


def test_second_lock_is_refused_naming_the_owner(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = RunDirLock(run, argv=["stoker", "train", "a"]).acquire()
    try:
        owner = read_owner(run)
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["command"] == "stoker train a" and owner["started"]
        with pytest.raises(RunDirBusy) as info:
            RunDirLock(run, argv=["stoker", "train", "b"]).acquire()
        msg = str(info.value)
        assert f"PID {os.getpid()}" in msg and "stoker train a" in msg and "output_dir" in msg
        assert info.value.exit_code == 2
    finally:
        first.release()
    assert not (run / OWNER_FILE).exists() and (run / LOCK_FILE).exists()
    RunDirLock(run).acquire().release()  # free again


def test_lock_dies_with_its_process(tmp_path: Path) -> None:
    """kill -9 leaves no stale lock: the kernel drops a flock with its process."""
    run = tmp_path / "run"
    code = ("import sys, time; from stoker.train.run_lock import RunDirLock; "
            f"RunDirLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=f"PID {proc.pid}"):
            RunDirLock(run).acquire()
        proc.kill()
        proc.wait()
        lock = RunDirLock(run).acquire()
        assert read_owner(run)["pid"] == os.getpid()
        lock.release()
    finally:
        proc.kill()
        proc.wait()


def test_without_flock_the_owner_record_is_the_lock(tmp_path: Path, monkeypatch) -> None:
    """A file system that refuses flock (NFS without a lock manager): the owner record,
    created exclusively, stands in; a record of a dead process on this host is taken over."""
    import fcntl

    def no_flock(fd, op):  # noqa: ANN001
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run = tmp_path / "run"
    first = RunDirLock(run).acquire()
    assert read_owner(run)["lock"] == "owner-record"
    with pytest.raises(RunDirBusy, match="does not support flock"):
        RunDirLock(run).acquire()
    first.release()
    assert read_owner(run) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / OWNER_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                              "started": "then", "command": "old"}))
    RunDirLock(run).acquire().release()  # the dead owner's record was taken over


def _slow_env(tmp_path: Path) -> dict[str, str]:
    here = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
                STOKER_HOME=str(tmp_path / "home"))


@pytest.mark.integration
def test_two_trains_on_one_output_dir(stoker_cmd, tiny_data: Path, tmp_path: Path) -> None:
    """Two `stoker train ... output_dir=same` started together: one runs, the other exits 2
    naming it; kill -9 the owner and a new run takes the directory and resumes; the run's
    metrics have no duplicate lines and one model artifact is published."""
    out = tmp_path / "run"
    args = ["train", "gpt-char",
            *[o for o in tiny_overrides(tiny_data, out) if o != "register_artifact=false"],
            "trainer.max_steps=30", "+callbacks.slow._target_=_slow_steps.SlowSteps"]
    env = _slow_env(tmp_path)
    # steps of 0.5 s while the two race: the owner is still running when the other one
    # reaches the lock, however slow the machine is to start the second process
    logs = [open(tmp_path / f"err{i}.txt", "w+") for i in range(2)]  # noqa: SIM115
    procs = [subprocess.Popen([*stoker_cmd, *args, "+callbacks.slow.seconds=0.5", "--yes"],
                              stdout=subprocess.DEVNULL, stderr=log,
                              text=True, env=env) for log in logs]
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        ended = [p for p in procs if p.poll() is not None]
        assert len(ended) == 1, "neither run stopped"
        [loser] = ended
        [owner] = [p for p in procs if p is not loser]
        err = (tmp_path / f"err{procs.index(loser)}.txt").read_text()
        assert loser.returncode == 2, err
        assert f"PID {owner.pid}" in err and "in use by another run" in err, err
        assert "Traceback" not in err
        # wait for a checkpoint, then kill -9 the owner mid-run
        while time.monotonic() < deadline and owner.poll() is None \
                and find_latest(out / "checkpoints") is None:
            time.sleep(0.05)
        assert owner.poll() is None, "the owner ended before it could be killed"
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in logs:
            log.close()
    assert (read_owner(out) or {}).get("pid") == owner.pid, (  # left by the dead owner
        sorted(os.listdir(out)), (tmp_path / f"err{procs.index(owner)}.txt").read_text()[-3000:])
    again = run_cli(stoker_cmd, *args, "+callbacks.slow.seconds=0", "--yes", env=env, check=True)
    assert "resum" in (again.stdout + again.stderr).lower()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == list(range(1, 31))
    assert (out / "checkpoints" / "step-00000030" / "COMMITTED").exists()
    versions = run_cli(stoker_cmd, "artifacts", "list", env=env, check=True).stdout
    assert "gpt-char" in versions and "v1" in versions and "v2" not in versions, versions
    assert read_owner(out) is None  # released at the end
