"""W&B and MLflow metric loggers and lineage trackers, read back with each tool's own
reader: the MLflow client on a local store, W&B's protobuf records in the offline run file."""
from __future__ import annotations

import glob
import struct
from pathlib import Path

import pytest

from stoker import Artifact, MlflowTracker, Registry, WandbTracker, set_lineage_tracker


def _wandb_records(run_dir: Path) -> list:
    """Wait (briefly) for W&B's writer to finish the run file, then parse it."""
    import time

    deadline = time.time() + 20
    while True:
        records = _parse_wandb(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
            return records
        time.sleep(0.2)


def _parse_wandb(run_dir: Path) -> list:
    """Records of a W&B offline run file, parsed with W&B's own protobuf ``Record``.

    The file is W&B's LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks
    (crc32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))[-1]
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    records, pos, buf = [], 7, b""
    while pos + 7 <= len(data):
        block_left = 32768 - (pos % 32768)
        if block_left < 7:
            pos += block_left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        buf += chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            records.append(rec)
            buf = b""
    return records


def test_wandb_logger_offline_files(tmp_path: Path) -> None:
    from stoker.track.wandb_logger import WandbLogger

    run_dir = tmp_path / "run"
    log = WandbLogger(run_dir, {"optim": {"lr": 0.1}})
    for step in range(3):
        log.log({"loss": 1.0 / (step + 1)}, step)
    log.close()
    import json

    def key(item) -> str:
        return item.key or ".".join(item.nested_key)

    history = [{key(i): json.loads(i.value_json) for i in r.history.item}
               for r in _wandb_records(run_dir) if r.WhichOneof("record_type") == "history"]
    assert [(h["_step"], h["loss"]) for h in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    runs = [r.run for r in _wandb_records(run_dir) if r.WhichOneof("record_type") == "run"]
    assert any(key(u) == "optim" and json.loads(u.value_json) == {"lr": 0.1}
               for r in runs for u in r.config.update)
    assert (run_dir / "wandb_run_id.txt").is_file()


def test_wandb_tracker_logs_artifacts_offline(tmp_path: Path, data_dir: Path) -> None:
    import wandb

    reg = Registry(tmp_path / "reg")
    data = Artifact(path=data_dir).save("d", registry=reg)
    run = wandb.init(project="t", dir=str(tmp_path), mode="offline")
    set_lineage_tracker(WandbTracker())
    Artifact.from_uri("d:v1", registry=reg)
    model = Artifact(path=data_dir / "blend.json").save("m", registry=reg)
    assert model.producer.tracker == "wandb" and model.producer.tracker_run_id == run.id
    assert model.producer.used_artifacts == [data.uri]
    run.finish()
    arts = [r.artifact for r in _wandb_records(tmp_path) if r.WhichOneof("record_type") == "artifact"]
    assert any(a.name == "m" and "stoker-v1" in list(a.aliases) for a in arts)


def test_mlflow_logger_and_tracker(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from stoker.track.mlflow_logger import MlflowLogger

    run_dir = tmp_path / "run"
    log = MlflowLogger(run_dir, {"name": "demo", "optim": {"lr": 0.1}})
    for step in range(3):
        log.log({"loss": 1.0 / (step + 1), "train/lr": 0.1}, step)
    log.close()
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    hist = client.get_metric_history(log.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    run = client.get_run(log.run_id)
    assert run.data.params["optim.lr"] == "0.1" and run.info.status == "FINISHED"
    # resume continues the same run
    again = MlflowLogger(run_dir, {"name": "demo"}, resume_step=2)
    assert again.run_id == log.run_id
    again.close()

    import mlflow

    mlflow.set_tracking_uri((tmp_path / "ml2").resolve().as_uri())
    reg = Registry(tmp_path / "reg")
    with mlflow.start_run() as active:
        set_lineage_tracker(MlflowTracker())
        saved = Artifact(path=data_dir).save("d", registry=reg)
    r = MlflowClient(tracking_uri=(tmp_path / "ml2").resolve().as_uri()).get_run(active.info.run_id)
    assert r.data.tags["stoker.artifact.d"] == saved.uri and saved.producer.tracker == "mlflow"
