"""Versions are never lost: 8 processes x 50 publishes of one name, and kill -9 mid-save.

Real processes against a real local directory and a real S3 endpoint (moto on loopback,
through s3fs), exactly as users would run several training jobs at once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from stoker import Artifact, Registry

HERE = Path(__file__).parent
WORKERS, EACH = 8, 50


def _run_publishers(url: str, endpoint: str, tmp_path: Path) -> list[int]:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "_publisher.py"), url, endpoint, "shared",
                          str(EACH), str(w), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for w in range(WORKERS)
    ]
    time.sleep(0.5)
    go.touch()
    got: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=400)
        assert p.returncode == 0, err
        got.extend(json.loads(out.strip().splitlines()[-1]))
    return got


def _check_registry(reg: Registry, got: list[int]) -> None:
    total = WORKERS * EACH
    assert sorted(got) == list(range(1, total + 1)), "a version was lost or given twice"
    assert reg.resolve("art://shared:latest").version == total
    seen = set()
    for v in reg.versions("shared"):
        meta = v.artifact["metadata"]
        seen.add((meta["worker"], meta["i"]))
        assert reg.verify(v.uri).ok, v.uri
    assert seen == {(w, i) for w in range(WORKERS) for i in range(EACH)}


@pytest.mark.integration
def test_concurrent_publishers_local(tmp_path: Path) -> None:
    url = str(tmp_path / "registry")
    got = _run_publishers(url, "-", tmp_path)
    _check_registry(Registry(url), got)


@pytest.mark.integration
def test_concurrent_publishers_s3(tmp_path: Path, s3_registry_url) -> None:
    url, opts = s3_registry_url
    got = _run_publishers(url, opts["client_kwargs"]["endpoint_url"], tmp_path)
    _check_registry(Registry(url, storage_options=opts), got)


def _kill_mid_save(url: str, endpoint: str, reg: Registry, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(4096))
    os.mkfifo(src / "zz.pipe")  # reading it blocks: the publisher is stuck mid-copy
    Artifact(path=tmp_path / "big" / "a.bin").save("victim", registry=reg)  # v1 exists
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, str(HERE / "_killed_publisher.py"), url, endpoint,
                          "victim", str(src)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until data is being written
        objs = [o for o in _list_objects(reg, "victim") if o.endswith("a.bin")]
        if len(objs) >= 2:
            break
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.05)
    else:
        pytest.fail("publisher never started writing")
    time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert [v.version for v in reg.versions("victim")] == [1]
    assert reg.resolve("victim:latest").version == 1
    saved = Artifact(path=tmp_path / "big" / "a.bin").save("victim", registry=reg)
    assert saved.version == 2
    assert reg.resolve("victim:latest").version == 2 and reg.verify("victim:v2").ok
    # the killed publisher's data is garbage: gc removes it, and only it
    assert reg.collect_garbage(older_than=timedelta(hours=1)) == []  # young: may be copying
    orphans = reg.collect_garbage(older_than=timedelta(0), dry_run=True)
    assert len(orphans) == 1
    assert reg.collect_garbage(older_than=timedelta(0)) == orphans
    assert reg.collect_garbage(older_than=timedelta(0)) == []
    assert reg.verify("victim:v1").ok and reg.verify("victim:v2").ok


def _list_objects(reg: Registry, name: str) -> list[str]:
    fs = reg.store.fs
    root = reg.store.path("artifacts", name, "objects")
    try:
        fs.invalidate_cache()
        return fs.find(root)
    except FileNotFoundError:
        return []


@pytest.mark.integration
def test_killed_publisher_leaves_no_version_local(tmp_path: Path) -> None:
    url = str(tmp_path / "registry")
    _kill_mid_save(url, "-", Registry(url), tmp_path)


@pytest.mark.integration
def test_killed_publisher_leaves_no_version_s3(tmp_path: Path, s3_registry_url) -> None:
    url, opts = s3_registry_url
    _kill_mid_save(url, opts["client_kwargs"]["endpoint_url"], Registry(url, storage_options=opts), tmp_path)


def test_memory_registry_threads_never_lose_versions() -> None:
    """memory:// is one process: threads racing on it get distinct versions too."""
    import threading
    import uuid

    reg = Registry(f"memory://reg-{uuid.uuid4().hex}")
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"/src-{id(reg)}.txt", b"x")
    got: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            a = Artifact(path=f"memory:///src-{id(reg)}.txt").save("m", registry=reg)
            with lock:
                got.append(a.version)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 81))
    assert reg.resolve("m:latest").version == 80
