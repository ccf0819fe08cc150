"""A trained model's lineage through the real CLI: model <- data artifact <- source datasets.

Covers the three ways a run gets its data: the built-in corpus (`data.path=builtin:char`,
published once as `stoker-corpus-char`), `${art:NAME,path}`, and a plain directory that
`stoker data prepare --register NAME` published (found through its sidecar).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from train_helpers import run_cli, tiny_corpus_text

pytestmark = pytest.mark.integration

# The smallest gpt-char that still runs: lineage is about what gets published, not training.
TINY = ["model.n_layers=1", "model.dim=16", "model.n_heads=2", "model.n_kv_heads=1",
        "data.seq_len=16", "data.batch_size=2", "trainer.max_steps=2", "trainer.eval_every=2",
        "trainer.eval_batches=1", "checkpoint.every_steps=2", "loggers=[jsonl]",
        "~callbacks.samples", "trainer.num_threads=1", "--yes"]


def _env(home: Path) -> dict[str, str]:
    return dict(os.environ, STOKER_HOME=str(home), OMP_NUM_THREADS="1")


def _lineage(stoker_cmd, env, uri: str) -> dict:
    proc = run_cli(stoker_cmd, "artifacts", "lineage", uri, "--format", "json", env=env,
                   check=True)
    return json.loads(proc.stdout)


def test_demo_then_lineage_shows_model_data_source(stoker_cmd, tmp_path: Path) -> None:
    """`stoker demo` (cut to 2 steps) prints a sample and the paths; its model's lineage
    reaches the standard library; a second run on the same corpus reuses the data version."""
    env = _env(tmp_path / "home")
    demo = run_cli(stoker_cmd, "demo", "--max-steps", "2", "--output-dir",
                   str(tmp_path / "demo"), env=env, check=True).stdout
    for text in ("def ", "run directory:", "checkpoints:", "tensorboard --logdir",
                 "art://gpt-char:v1"):
        assert text in demo, text
    run_cli(stoker_cmd, "train", "gpt-char", f"output_dir={tmp_path / 'b'}", *TINY,
            env=env, check=True)
    tree = _lineage(stoker_cmd, env, "art://gpt-char:latest")
    assert tree["uri"] == "art://gpt-char:v2" and tree["type"] == "ModelArtifact"
    [data] = tree["inputs"]
    assert data["uri"] == "art://stoker-corpus-char:v1"
    assert data["type"] == "PretrainBlendsArtifact"
    [source] = data["sources"]
    assert source["uri"].startswith("file://") and source["num_rows"] > 100
    assert source["size_bytes"] > 1_000_000 and len(source["sha256"]) == 64
    # the rich tree a user reads shows the same chain
    text = run_cli(stoker_cmd, "artifacts", "lineage", "art://gpt-char:v1", env=env,
                   check=True).stdout
    assert "stoker-corpus-char:v1" in text and "file://" in text


def test_registered_prepared_data_is_the_models_input(stoker_cmd, tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    src = tmp_path / "corpus.txt"
    src.write_text(tiny_corpus_text()[:8000], encoding="utf-8")
    data = tmp_path / "prepared"
    run_cli(stoker_cmd, "data", "prepare", "-i", str(src), "-o", str(data), "--type", "char",
            "-j", "1", "-q", "--register", "mydata", env=env, check=True)
    # through ${art:NAME,path}
    run_cli(stoker_cmd, "train", "gpt-char", "data.path=${art:mydata,path}",
            f"output_dir={tmp_path / 'via-art'}", *TINY, env=env, check=True)
    tree = _lineage(stoker_cmd, env, "art://gpt-char:v1")
    assert [p["uri"] for p in tree["inputs"]] == ["art://mydata:v1"]
    assert tree["inputs"][0]["sources"][0]["uri"].endswith("corpus.txt")
    # and through the plain directory the data was prepared in
    run_cli(stoker_cmd, "train", "gpt-char", f"data.path={data}",
            f"output_dir={tmp_path / 'via-dir'}", *TINY, env=env, check=True)
    tree = _lineage(stoker_cmd, env, "art://gpt-char:v2")
    assert [p["uri"] for p in tree["inputs"]] == ["art://mydata:v1"]


def test_eval_of_a_model_artifact_imports_only_trusted_modules(stoker_cmd, tmp_path: Path) -> None:
    """A model artifact's config comes from a registry: `stoker eval art://...` refuses to
    import a module outside stoker, torch and --trust, and imports it with --trust."""
    here = str(Path(__file__).resolve().parent)
    env = dict(_env(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    data = tmp_path / "corpus.txt"
    data.write_text(tiny_corpus_text())
    run_cli(stoker_cmd, "data", "prepare", "--input-path", str(data), "--output-dir",
            str(tmp_path / "data"), "--type", "char", env=env, check=True)
    run_cli(stoker_cmd, "train", "gpt-char", f"data.path={tmp_path / 'data'}",
            f"output_dir={tmp_path / 'run'}", "+metrics.own._target_=_slow_steps.OwnPerplexity",
            "+metrics.own.logits=preds.logits", "+metrics.own.labels=batch.labels",
            *TINY, env=env, check=True)
    refused = run_cli(stoker_cmd, "eval", "art://gpt-char:latest", "--batches", "1", env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert ("refusing to import '_slow_steps' from an untrusted config; pass --trust "
            "_slow_steps to allow it") in refused.stderr
    ok = run_cli(stoker_cmd, "eval", "art://gpt-char:latest", "--batches", "1",
                 "--trust", "_slow_steps", env=env, check=True)
    assert "own" in ok.stdout
    own = run_cli(stoker_cmd, "eval", str(tmp_path / "run"), "--batches", "1", env=env,
                  check=True)  # the user's own run directory: trusted
    assert "own" in own.stdout
