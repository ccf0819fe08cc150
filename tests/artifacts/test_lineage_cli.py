"""Lineage end to end (prepared data -> trained model) and the `stoker artifacts` CLI."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stoker import ModelArtifact, PretrainBlendsArtifact, Registry
from stoker.artifacts.publish_data import register_prepared_dataset
from stoker.train.publish import register_trained_model
from stoker.track.run import run_scope


def _prepared(tmp_path: Path) -> Path:
    """A directory shaped like `stoker data prepare` output (metadata.json last)."""
    out = tmp_path / "prepared"
    for split in ("train", "valid", "test"):
        (out / split).mkdir(parents=True)
        (out / split / "shard-00000.bin").write_bytes(b"\x00\x01" * 64)
    (out / "tokenizer").mkdir()
    (out / "tokenizer" / "vocab.json").write_text("{}")
    src = tmp_path / "corpus.txt"
    src.write_text("hello world\n")
    (out / "metadata.json").write_text(json.dumps({
        "format": 1, "stoker_version": "0.1.0", "command": "stoker data prepare --input-path corpus.txt",
        "dtype": "uint16", "vocab_size": 70, "eos_id": 0, "tokenizer": {"type": "char", "path": "tokenizer"},
        "total_tokens": 192, "documents": 3,
        "splits": {"train": {"tokens": 64}, "valid": {"tokens": 64}, "test": {"tokens": 64}},
        "sources": [{"path": str(src), "format": "text", "size": 12, "sha256": "ab" * 32}],
    }))
    return out


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "outputs" / "gpt-char" / "20260101-000000"
    ck = run / "checkpoints" / "step-00000010"
    ck.mkdir(parents=True)
    (ck / "model.safetensors").write_bytes(b"weights")
    (ck / "COMMITTED").write_text("{}")
    (run / "config.yaml").write_text("name: gpt-char\nmodel:\n  architecture: gpt\n  n_layers: 2\n")
    (run / "env.json").write_text(json.dumps({"git": {"commit": "abc123", "dirty": True}}))
    (run / "command.txt").write_text("stoker train gpt-char\n")
    return run


def _demo(tmp_path: Path, reg: Registry) -> tuple[PretrainBlendsArtifact, ModelArtifact]:
    data = register_prepared_dataset(_prepared(tmp_path), "tiny-data", registry=reg)
    with run_scope("run-1", recipe="gpt-char"):
        used = PretrainBlendsArtifact.from_uri("tiny-data:latest", registry=reg)
        model = register_trained_model(_run_dir(tmp_path), "gpt-char", step=10,
                                       metrics={"loss": 1.5, "val/loss": 1.7},
                                       data_path=used.path, registry=reg)
    return data, model


def test_prepared_dataset_and_model_lineage(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    data, model = _demo(tmp_path, reg)
    assert data.total_tokens == 192 and data.split_tokens == {"train": 64, "valid": 64, "test": 64}
    assert data.source_datasets[0].sha256 == "ab" * 32 and data.source_datasets[0].size_bytes == 12
    assert data.tokenizer_uri and data.tokenizer_uri.startswith("file://")
    assert model.producer.used_artifacts == ["art://tiny-data:v1"]
    assert data.producer.used_artifacts == []  # inputs go on the produced artifact only
    p = model.producer
    assert (p.run_id, p.recipe, p.git_commit, p.git_dirty) == ("20260101-000000", "gpt-char", "abc123", True)
    assert p.config_hash and len(p.config_hash) == 64 and p.stoker_version
    assert model.loss == 1.5 and model.step == 10 and model.architecture == "gpt"
    assert (Path(model.path) / "checkpoint" / "model.safetensors").read_bytes() == b"weights"
    assert (Path(model.path) / "config.yaml").is_file()
    node = reg.lineage("gpt-char:latest")
    assert node.parents[0].uri == "art://tiny-data:v1"
    assert node.parents[0].sources[0]["uri"].startswith("file://")


def test_data_path_sidecar_links_model_to_data_without_resolving(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    prepared = _prepared(tmp_path)
    register_prepared_dataset(prepared, "d", registry=reg)
    model = register_trained_model(_run_dir(tmp_path), "m", step=10, metrics={}, data_path=prepared, registry=reg)
    assert model.producer.used_artifacts == ["art://d:v1"]


@pytest.mark.integration
def test_cli_commands(tmp_path: Path, stoker_cmd: list[str], cli_env: dict) -> None:
    reg_dir = tmp_path / "reg"
    _demo(tmp_path, Registry(reg_dir))
    r = ["--registry", str(reg_dir)]

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([*stoker_cmd, "artifacts", *args], capture_output=True, text=True, env=cli_env)
        assert p.returncode == code, (p.stdout, p.stderr)
        return p

    assert "tiny-data" in run("list", *r).stdout and "gpt-char" in run("list", *r).stdout
    tree = run("lineage", "art://gpt-char:latest", *r).stdout
    assert tree.index("art://gpt-char:v1") < tree.index("art://tiny-data:v1") < tree.index("file://")
    assert "flowchart" in run("lineage", "gpt-char:v1", "--format", "mermaid", *r).stdout
    assert "digraph" in run("lineage", "gpt-char:v1", "--format", "dot", *r).stdout
    js = json.loads(run("lineage", "gpt-char:v1", "--format", "json", *r).stdout)
    assert js["inputs"][0]["uri"] == "art://tiny-data:v1"
    shown = run("show", "gpt-char:latest", *r).stdout  # piped: the pipe format
    assert ModelArtifact.from_record(json.loads(shown)["artifact"]).step == 10
    assert "production -> art://gpt-char:v1" in run("alias", "gpt-char:v1", "production", *r).stdout
    assert "v1" in run("show", "gpt-char:production", *r).stdout
    assert "ok" in run("verify", "gpt-char:v1", *r).stdout
    run("alias", "gpt-char:v1", "production", "--remove", *r)
    run("show", "gpt-char:production", *r, code=2)
    err = run("alias", "gpt-char:v1", "../x", *r, code=2).stderr
    assert "Invalid alias" in err and "Traceback" not in err
    # corrupt a stored file: verify fails with exit 1
    stored = Path(json.loads(shown)["artifact"]["path"]) / "config.yaml"
    stored.write_text("changed")
    assert "changed: config.yaml" in run("verify", "gpt-char:v1", *r, code=1).stderr
    run("rm", "gpt-char:v1", *r)
    assert "no visible version" in run("show", "gpt-char:latest", *r, code=2).stderr
    run("rm", "gpt-char", *r, code=2)
    # gc: data of a killed publish (an old, unreferenced object folder) goes; versions stay
    orphan = reg_dir / "artifacts" / "tiny-data" / "objects" / "20200101T000000-0123456789ab"
    (orphan / "data").mkdir(parents=True)
    assert "would remove 1 " in run("gc", "--dry-run", *r).stdout and orphan.exists()
    assert str(orphan) in run("gc", "tiny-data", *r).stdout and not orphan.exists()
    assert "removed 0 " in run("gc", "--older-than", "0", *r).stdout
    assert run("verify", "tiny-data:v1", *r).returncode == 0
    err = run("gc", "--older-than", "soon", *r, code=2).stderr
    assert "--older-than 'soon' is not an age" in err and "Traceback" not in err


def test_gc_age_parsing() -> None:
    from datetime import timedelta

    from stoker.cli.artifacts_cmd import parse_age
    from stoker.errors import UserError

    assert parse_age("0") == timedelta(0)
    assert parse_age("90s") == timedelta(seconds=90)
    assert parse_age("1.5h") == timedelta(minutes=90)
    assert parse_age("7d") == timedelta(days=7)
    for bad in ("soon", "-1h", "nanh", "infh", "1e9d", "h", ""):
        with pytest.raises(UserError, match="is not an age"):
            parse_age(bad)


@pytest.mark.integration
def test_cli_list_counts_live_versions_and_verify_reports_added_files(
        tmp_path: Path, stoker_cmd: list[str], cli_env: dict) -> None:
    reg_dir = tmp_path / "reg"
    reg = Registry(reg_dir)
    data = _prepared(tmp_path)
    for _ in range(3):
        register_prepared_dataset(data, "tiny-data", registry=reg, mode="copy")
    r = ["--registry", str(reg_dir)]

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        p = subprocess.run([*stoker_cmd, "artifacts", *args], capture_output=True, text=True, env=cli_env)
        assert p.returncode == code, (p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
        return p

    def listed() -> dict:
        return {e["name"]: e for e in json.loads(run("list", "--json", *r).stdout)}

    assert listed()["tiny-data"]["versions"] == 3
    run("rm", "tiny-data:v3", *r)
    run("rm", "tiny-data:v1", *r)
    entry = listed()["tiny-data"]
    assert entry["versions"] == 1 and entry["latest"] == 2  # removed versions are not counted
    run("rm", "tiny-data:v2", *r)
    assert "tiny-data" not in listed()  # nothing left to load: not listed
    assert "No artifacts" in run("list", *r).stdout

    # a file added to a stored version fails verify (exit 1) and is named
    register_prepared_dataset(data, "more-data", registry=reg, mode="copy")
    stored = Path(json.loads(run("show", "more-data:v1", *r).stdout)["artifact"]["path"])
    assert "ok" in run("verify", "more-data:v1", *r).stdout
    (stored / "train" / "shard-99999.bin").write_bytes(b"sneaked in")
    err = run("verify", "more-data:v1", *r, code=1).stderr
    assert "FAILED" in err and "train/shard-99999.bin" in err and "added" in err
