"""Registry behaviour a user notices: versions, aliases, latest, verify, modes, backends."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import stoker
from stoker import Artifact, ModelArtifact, PretrainBlendsArtifact, Registry
from stoker.errors import ArtifactError, RegistryError


def test_versions_count_from_v1_and_latest_moves(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    a1 = Artifact(path=data_dir).save("ds", registry=reg)
    a2 = Artifact(path=data_dir).save("ds", registry=reg)
    assert (a1.uri, a2.uri) == ("art://ds:v1", "art://ds:v2")
    assert Artifact.from_uri("art://ds:latest", registry=reg).version == 2
    assert Artifact.from_uri("art://ds", registry=reg).version == 2
    assert Artifact.from_uri("art://ds:v1", registry=reg).version == 1


def test_copy_mode_survives_source_deletion(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    art = PretrainBlendsArtifact(path=data_dir, train_path=data_dir / "train").save("ds", registry=reg)
    import shutil

    shutil.rmtree(data_dir)
    loaded = PretrainBlendsArtifact.from_uri("ds:latest", registry=reg)
    assert (Path(loaded.path) / "blend.json").read_text() == '{"weights": [1.0]}'
    assert Path(loaded.train_path).parent == Path(loaded.path)
    assert (Path(loaded.train_path) / "shard-0.bin").is_file()
    assert reg.verify(art.uri).ok


def test_reference_mode_keeps_data_in_place_and_verify_detects_changes(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    art = Artifact(path=data_dir).save("ref", registry=reg, mode="reference")
    assert Path(art.path) == data_dir
    assert reg.verify("ref:v1").ok
    (data_dir / "blend.json").write_text("tampered")
    (data_dir / "valid" / "shard-0.bin").unlink()
    report = reg.verify("ref:v1")
    assert not report.ok
    assert report.changed == ["blend.json"] and report.missing == ["valid/shard-0.bin"]


def test_verify_detects_corrupted_copy(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    art = Artifact(path=data_dir).save("ds", registry=reg)
    (Path(art.path) / "train" / "shard-0.bin").write_bytes(b"flipped")
    assert reg.verify("ds:v1").changed == ["train/shard-0.bin"]


def test_aliases_set_move_remove(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    for _ in range(3):
        Artifact(path=data_dir).save("m", registry=reg)
    reg.set_alias("m:v1", "production")
    assert reg.resolve("art://m:production").version == 1
    reg.set_alias("m:v3", "production")  # move
    assert reg.resolve("m:production").version == 3
    assert reg.aliases("m") == {"production": 3}
    reg.remove_alias("m", "production")
    with pytest.raises(ArtifactError, match="no alias 'production'"):
        reg.resolve("m:production")
    saved = Artifact(path=data_dir).save("m", registry=reg, aliases=["staging"])
    assert reg.resolve("m:staging").version == saved.version == 4


def test_latest_is_reserved_and_always_newest(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    Artifact(path=data_dir).save("m", registry=reg)
    with pytest.raises(ArtifactError, match="reserved"):
        reg.set_alias("m:v1", "latest")
    Artifact(path=data_dir).save("m", registry=reg)
    assert reg.resolve("m:latest").version == 2


def test_rm_tombstones_version_and_latest_steps_back(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    for _ in range(3):
        Artifact(path=data_dir).save("m", registry=reg)
    reg.set_alias("m:v3", "prod")
    reg.delete("m:v3")
    assert reg.resolve("m:latest").version == 2
    with pytest.raises(ArtifactError, match="removed"):
        reg.resolve("m:v3")
    assert "prod" not in reg.aliases("m")
    assert Artifact(path=data_dir).save("m", registry=reg).version == 4  # never reused


def test_stale_latest_hint_is_still_exact(tmp_path: Path, data_dir: Path) -> None:
    """A publisher that died before moving the hint cannot make `latest` wrong."""
    reg = Registry(tmp_path / "reg")
    for _ in range(5):
        Artifact(path=data_dir / "blend.json").save("m", registry=reg)
    (tmp_path / "reg" / "artifacts" / "m" / "LATEST").write_text("2")
    assert reg.resolve("m:latest").version == 5
    (tmp_path / "reg" / "artifacts" / "m" / "LATEST").write_text("999")  # damaged hint
    assert reg.resolve("m:latest").version == 5


def test_latest_costs_constant_requests(tmp_path: Path, data_dir: Path) -> None:
    """Resolving latest never lists versions: the same few existence checks at 3 or 300."""
    reg = Registry(tmp_path / "reg")
    calls = {"exists": 0, "read": 0, "list": 0}
    store = reg.store
    orig = (store.exists, store.read_bytes, store.listdir)

    def count(kind, fn):
        def wrapped(*a, **k):
            calls[kind] += 1
            return fn(*a, **k)
        return wrapped

    def measure(n_versions: int) -> dict:
        while reg._top("c", reg._read_hint("c")) < n_versions:
            Artifact(path=data_dir / "blend.json").save("c", registry=reg)
        calls.update(exists=0, read=0, list=0)
        store.exists, store.read_bytes, store.listdir = (count("exists", orig[0]), count("read", orig[1]),
                                                         count("list", orig[2]))
        try:
            assert reg.resolve("c:latest").version == n_versions
        finally:
            store.exists, store.read_bytes, store.listdir = orig
        return dict(calls)

    small, big = measure(3), measure(300)
    assert small == big and big["list"] == 0


def test_memory_and_file_urls(data_dir: Path, tmp_path: Path) -> None:
    import uuid

    mem = Registry(f"memory://r-{uuid.uuid4().hex}")
    a = Artifact(path=data_dir).save("x", registry=mem)
    assert str(a.path).startswith("memory://") and mem.verify("x:latest").ok
    f = Registry(f"file://{tmp_path}/freg")
    assert Artifact(path=data_dir).save("x", registry=f).uri == "art://x:v1"
    assert (tmp_path / "freg" / "artifacts" / "x" / "versions" / "v1.json").is_file()


def test_s3_registry_is_real_s3_not_a_local_folder(s3_registry_url, data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    url, opts = s3_registry_url
    reg = Registry(url, storage_options=opts)
    art = PretrainBlendsArtifact(path=data_dir, total_tokens=3).save("s3data", registry=reg)
    assert str(art.path).startswith("s3://") and not any(tmp_path.glob("s3*"))
    assert PretrainBlendsArtifact.from_uri("s3data:latest", registry=reg).total_tokens == 3
    assert reg.verify("s3data:v1").ok
    import s3fs

    fs = s3fs.S3FileSystem(**opts)
    assert fs.exists(url + "/artifacts/s3data/versions/v1.json")


def test_unsupported_backend_fails_loudly(data_dir: Path) -> None:
    pytest.importorskip("fsspec.implementations.ftp")
    from stoker.artifacts.storage import Store

    store = Store("memory://x")
    store.protocol = "ftp"  # a backend without an exclusive create
    with pytest.raises(RegistryError, match="no exclusive create"):
        store.create_exclusive("/x/v1.json", {})


def test_s3_endpoint_without_conditional_writes_is_refused(s3_registry_url, monkeypatch) -> None:
    from stoker.artifacts import storage

    url, opts = s3_registry_url
    store = storage.Store(url, opts)
    monkeypatch.setattr(storage, "_S3_CHECKED", {})
    monkeypatch.setattr(storage, "_s3_put_if_absent", lambda fs, path, data: True)  # ignores If-None-Match
    with pytest.raises(RegistryError, match="ignores conditional writes"):
        store.create_exclusive(store.path("artifacts/x/versions/v1.json"), {})


def test_s3_put_whose_reply_was_lost_is_ours_on_retry(s3_registry_url) -> None:
    """botocore retries a PUT whose reply was lost; the retry meets the object the first try
    stored (412). Our own bytes there mean we created it; someone else's bytes mean we did
    not (no duplicate version, no lost one)."""
    import s3fs

    from stoker.artifacts import storage

    url, opts = s3_registry_url
    fs = s3fs.S3FileSystem(**opts)
    path = url.removeprefix("s3://") + "/artifacts/lost/versions/v1.json"
    assert storage._s3_put_if_absent(fs, path, b'{"mine": 1}') is True  # landed, reply "lost"
    assert storage._s3_put_if_absent(fs, path, b'{"mine": 1}') is True  # the retry: ours
    assert storage._s3_put_if_absent(fs, path, b'{"theirs": 2}') is False  # another publisher
    assert storage._s3_get(fs, path) == b'{"mine": 1}'


def test_default_registry_lives_under_stoker_home(data_dir: Path) -> None:
    art = Artifact(path=data_dir).save("home-art")
    home = Path(os.environ["STOKER_HOME"])
    assert Path(art.path).is_relative_to(home / "registry")
    assert not stoker.is_initialized()
    assert stoker.get_config().registry_path == str(home / "registry")


def test_init_sets_process_default_and_explicit_registry_wins(tmp_path: Path, data_dir: Path) -> None:
    reg = stoker.init(backend="fsspec", registry_path=tmp_path / "r1")
    assert stoker.is_initialized() and stoker.get_config().backend == "fsspec"
    Artifact(path=data_dir).save("d")
    assert reg.resolve("d:latest").version == 1
    other = Registry(tmp_path / "r2")
    assert Artifact(path=data_dir).save("d", registry=other).version == 1
    with pytest.raises(ArtifactError, match="Unknown registry backend"):
        stoker.init(backend="nope")


def test_missing_artifacts_give_clear_errors(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(ArtifactError, match="registry is empty"):
        reg.resolve("nothing:latest")
    Artifact(path=data_dir).save("d", registry=reg)
    with pytest.raises(ArtifactError, match=r"versions v1..v1"):
        reg.resolve("d:v7")
    with pytest.raises(ArtifactError, match="Known names: d"):
        reg.resolve("e:v1")
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact(path=tmp_path / "nope").save("d", registry=reg)


def test_type_mismatch_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    PretrainBlendsArtifact(path=data_dir).save("d", registry=reg)
    with pytest.raises(ArtifactError, match="not a ModelArtifact"):
        ModelArtifact.from_uri("d:latest", registry=reg)
    assert type(Artifact.from_uri("d:latest", registry=reg)) is PretrainBlendsArtifact


def test_version_record_is_plain_json(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    Artifact(path=data_dir, metadata={"k": 1}).save("d", registry=reg)
    rec = json.loads((tmp_path / "reg/artifacts/d/versions/v1.json").read_text())
    assert rec["version"] == 1 and rec["files"] == 3 and rec["artifact"]["metadata"] == {"k": 1}
    manifest = json.loads((tmp_path / "reg/artifacts/d" / rec["manifest"]).read_text())
    assert {f["path"] for f in manifest["files"]} == {"blend.json", "train/shard-0.bin", "valid/shard-0.bin"}


def test_gc_removes_only_old_unreferenced_objects(tmp_path: Path, data_dir: Path) -> None:
    from datetime import datetime, timedelta, timezone

    reg = Registry(tmp_path / "reg")
    Artifact(path=data_dir).save("d", registry=reg)
    Artifact(path=data_dir).save("d", registry=reg, mode="reference")
    Artifact(path=data_dir).save("e", registry=reg)
    objects = tmp_path / "reg" / "artifacts" / "d" / "objects"
    (objects / "20200101T000000-deadbeef0000" / "data").mkdir(parents=True)  # a killed publish
    (objects / "20200101T000000-deadbeef0000" / "data" / "x.bin").write_bytes(b"x" * 10)
    (objects / "someone-elses-folder").mkdir()  # not a stoker object id: never touched
    now = datetime.now(timezone.utc)
    (objects / f"{now:%Y%m%dT%H%M%S}-0123456789ab").mkdir()  # a publish still copying

    assert reg.collect_garbage(dry_run=True) == [str(objects / "20200101T000000-deadbeef0000")]
    assert (objects / "20200101T000000-deadbeef0000").exists()
    assert reg.collect_garbage("d") == [str(objects / "20200101T000000-deadbeef0000")]
    assert not (objects / "20200101T000000-deadbeef0000").exists()
    assert (objects / "someone-elses-folder").exists()
    assert reg.collect_garbage() == []  # the young one is kept...
    later = now + timedelta(days=2)
    assert reg.collect_garbage(now=later) == [str(objects / f"{now:%Y%m%dT%H%M%S}-0123456789ab")]
    for ref in ("d:v1", "d:v2", "e:v1"):  # ...and every version still verifies
        assert reg.verify(ref).ok
    reg.delete("d:v1")  # its data goes with it; the tombstone references nothing
    assert reg.collect_garbage(now=later) == []
    assert reg.verify("d:v2").ok
