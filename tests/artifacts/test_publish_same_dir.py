"""Publishing one directory from several processes at once: every publish succeeds.

Each publish of a local directory rewrites the sidecar ``.stoker-artifact.json`` in it
(through a temp file beside it); a copy that listed that temp file then failed on a file
renamed away under it ("No such file or directory (..stoker-artifact.json.XXXX.tmp)").
Through the real CLI (`stoker data prepare --register` of a finished dataset publishes
it again)."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from stoker import Registry
from stoker.data.corpus import default_corpus_files

pytestmark = pytest.mark.integration
PUBLISHERS = 8


@pytest.fixture
def dataset(tmp_path: Path, stoker_cmd: list[str]) -> tuple[Path, list[str]]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, f in enumerate(default_corpus_files()[:30]):
        (corpus / f"{i:03d}.py").write_bytes(f.read_bytes())
    out = tmp_path / "data"
    args = ["data", "prepare", "-i", str(corpus), "-o", str(out), "--type", "char",
            "--shard-size-mb", "0.02", "-q"]
    r = subprocess.run([*stoker_cmd, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out, args


def test_eight_concurrent_publishes_of_one_directory(stoker_cmd, tmp_path, dataset) -> None:
    out, args = dataset
    reg = tmp_path / "reg"
    cmd = [*stoker_cmd, *args, "--register", "ds", "--registry", str(reg)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PUBLISHERS)]
    deadline = time.monotonic() + 300
    results = []
    for p in procs:
        so, se = p.communicate(timeout=max(1, deadline - time.monotonic()))
        results.append((p.returncode, so, se))
    failed = [se for code, _, se in results if code != 0]
    assert not failed, f"{len(failed)} of {PUBLISHERS} publishes failed:\n" + "\n".join(failed)
    got = sorted(json.loads(so.strip().splitlines()[-1])["uri"] for _, so, _ in results)
    registry = Registry(str(reg))
    versions = registry.versions("ds")
    assert sorted(v.uri for v in versions) == got  # one version per publisher, none twice
    assert [v.version for v in versions] == list(range(1, PUBLISHERS + 1))
    files = {v.files for v in versions}
    assert len(files) == 1, files  # every copy holds the same files
    for v in versions:
        assert registry.verify(v.uri).ok, v.uri


def test_stoker_temp_files_in_a_published_directory_are_not_content(
        stoker_cmd, tmp_path, dataset) -> None:
    """What a concurrent or killed writer leaves mid-write is never copied or listed."""
    out, args = dataset
    (out / "..stoker-artifact.json.ab12cd34.tmp").write_text("a sidecar being written")
    (out / "train" / ".shard-00999.bin.x1y2z3q4.tmp").write_bytes(b"half a shard")
    reg = tmp_path / "reg"
    r = subprocess.run([*stoker_cmd, *args, "--register", "ds", "--registry", str(reg)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    registry = Registry(str(reg))
    v = registry.resolve("art://ds:v1")
    manifest = json.loads((reg / "artifacts" / "ds" / v.manifest).read_text())
    names = [f["path"] for f in manifest["files"]]
    assert names and not [n for n in names if n.endswith(".tmp")], names
    assert not any(p.name.endswith(".tmp") for p in (reg / "artifacts").rglob("*"))
    assert registry.verify(v.uri).ok  # verify does not count them as added files either
    assert os.path.exists(out / "train" / ".shard-00999.bin.x1y2z3q4.tmp")  # not ours to remove
