"""Artifact types, the one pipe format, name validation and safe metadata reading."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stoker import Artifact, InputDatasetInfo, ModelArtifact, PretrainBlendsArtifact, Registry
from stoker.artifacts.names import parse_ref, validate_alias, validate_name
from stoker.artifacts.types import parse_stream, print_step_complete
from stoker.errors import ArtifactError


class EvalReportArtifact(Artifact):
    """A user's own artifact type."""

    accuracy: float
    per_task: dict[str, float] = {}


def test_user_subclass_round_trips(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    saved = EvalReportArtifact(path=data_dir, accuracy=0.75, per_task={"a": 0.5}).save("evals", registry=reg)
    assert isinstance(saved, EvalReportArtifact)
    back = Artifact.from_uri("evals:latest", registry=reg)
    assert type(back) is EvalReportArtifact and back.accuracy == 0.75 and back.per_task == {"a": 0.5}


def test_unknown_stored_type_loads_as_base_without_losing_fields(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    EvalReportArtifact(path=data_dir, accuracy=0.5).save("e", registry=reg)
    rec = tmp_path / "reg/artifacts/e/versions/v1.json"
    data = json.loads(rec.read_text())
    data["type"] = data["artifact"]["type"] = "NotImportedHere"
    rec.write_text(json.dumps(data))
    art = Artifact.from_uri("e:v1", registry=reg)
    assert type(art) is Artifact and art.type == "NotImportedHere"
    assert art.extra_fields["accuracy"] == 0.5 and art.to_record()["accuracy"] == 0.5


def test_unknown_fields_are_errors() -> None:
    with pytest.raises(ValueError, match="total_tokenz"):
        PretrainBlendsArtifact(path=Path("x"), total_tokenz=3)


def test_urls_are_not_mangled_into_local_paths() -> None:
    a = Artifact(path="s3://bucket/data/x")
    assert a.path == "s3://bucket/data/x"
    assert Artifact(path="local/dir").path == Path("local/dir")


def test_pipe_format_is_what_load_reads(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    saved = PretrainBlendsArtifact(path=data_dir, total_tokens=7).save("d", registry=reg)
    out = tmp_path / "out.jsonl"
    with out.open("w") as f:
        print_step_complete({"data": saved}, file=f)
    env = parse_stream(out.read_text())
    assert env[0]["uri"] == "art://d:v1" and env[0]["artifact"]["total_tokens"] == 7
    assert PretrainBlendsArtifact.load(out).total_tokens == 7


def test_load_from_stdin_between_two_real_processes(tmp_path: Path, data_dir: Path) -> None:
    """`producer | consumer`: the consumer's `load()` reads what `print_step_complete` wrote."""
    reg = tmp_path / "reg"
    producer = (
        "from stoker import PretrainBlendsArtifact, print_step_complete, Registry\n"
        f"a = PretrainBlendsArtifact(path={str(data_dir)!r}, total_tokens=42)"
        f".save('piped', registry=Registry({str(reg)!r}))\n"
        "print_step_complete({'data': a})\n"
    )
    consumer = (
        "from stoker import PretrainBlendsArtifact\n"
        "a = PretrainBlendsArtifact.load()\n"
        "print(a.uri, a.total_tokens)\n"
    )
    p1 = subprocess.run([sys.executable, "-c", producer], capture_output=True, text=True, check=True)
    p2 = subprocess.run([sys.executable, "-c", consumer], input=p1.stdout, capture_output=True,
                        text=True, check=True)
    assert p2.stdout.strip() == "art://piped:v1 42"


def test_stdin_garbage_is_a_clear_error() -> None:
    with pytest.raises(ArtifactError, match="stdin:1"):
        parse_stream("hello world\n")


def test_print_step_complete_on_terminal_is_human(tmp_path: Path, data_dir: Path) -> None:
    class Tty:
        def __init__(self) -> None:
            self.buf = []

        def write(self, s: str) -> None:
            self.buf.append(s)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return True

    t = Tty()
    print_step_complete(Artifact(path=data_dir), title="Data ready", file=t)
    assert "Data ready" in "".join(t.buf) and "{" not in "".join(t.buf)


@pytest.mark.parametrize("bad", ["../x", "a/b", "/abs", ".hidden", "", "a..b", "x" * 200, "a b", "a\\b"])
def test_bad_names_are_rejected(bad: str) -> None:
    with pytest.raises(ArtifactError, match="Invalid artifact name"):
        validate_name(bad)
    with pytest.raises(ArtifactError):
        parse_ref(f"art://{bad}:v1")


@pytest.mark.parametrize("bad", ["../prod", "a/b", "latest", "v3", ""])
def test_bad_aliases_are_rejected(bad: str) -> None:
    with pytest.raises(ArtifactError):
        validate_alias(bad)


def test_bad_names_never_touch_storage(tmp_path: Path, data_dir: Path) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(ArtifactError):
        Artifact(path=data_dir).save("../escape", registry=reg)
    with pytest.raises(ArtifactError):
        Artifact(path=data_dir).save("ok", registry=reg, aliases=["../../etc"])
    assert not (tmp_path / "escape").exists()
    assert not list((tmp_path / "reg").rglob("etc*"))


def test_refs() -> None:
    assert parse_ref("art://my-dataset:latest").alias == "latest"
    assert parse_ref("art://my-dataset:v3").version == 3
    assert parse_ref("art://my-model:production").alias == "production"
    with pytest.raises(ArtifactError, match="count from v1"):
        parse_ref("art://m:v0")
    with pytest.raises(ArtifactError, match="not an artifact URI"):
        parse_ref("s3://bucket/x")


def test_reading_metadata_never_executes_code(tmp_path: Path, data_dir: Path) -> None:
    """A hostile record names importable callables and pickles: nothing runs."""
    reg = Registry(tmp_path / "reg")
    Artifact(path=data_dir).save("evil", registry=reg)
    rec_path = tmp_path / "reg/artifacts/evil/versions/v1.json"
    rec = json.loads(rec_path.read_text())
    canary = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {canary}')"
    rec["type"] = "os.system"
    rec["artifact"]["type"] = payload
    rec["artifact"]["metadata"] = {"_target_": "os.system", "_args_": [f"touch {canary}"],
                                   "py/object": "os.system", "pickle": "gASVKAAAAAAAAACMAm9zlIwGc3lzdGVtlJOUjAV0b3VjaJSFlFKULg=="}
    rec_path.write_text(json.dumps(rec))
    art = Artifact.from_uri("evil:v1", registry=reg)
    assert art.type == payload  # kept as data
    with pytest.raises(ArtifactError):
        ModelArtifact.from_uri("evil:v1", registry=reg)
    from stoker.artifacts.lineage_graph import build_lineage, to_json

    to_json(build_lineage(reg, "evil:v1"))
    reg.verify("evil:v1")
    assert not canary.exists()


def test_input_dataset_info_fields() -> None:
    s = InputDatasetInfo(uri="hf://nvidia/OpenMathReasoning", name="OpenMathReasoning", split="train",
                         subset=None, weight=1.0, num_rows=1_500_000, size_bytes=2_500_000_000)
    assert s.model_dump()["num_rows"] == 1_500_000
