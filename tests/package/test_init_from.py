"""Fine-tuning from a pretrained model through the real CLI (``init_from=``).

The weights really load: a fine-tune with ``optim.lr=0`` ends with exactly the source's
tensors (bitwise), and its first loss is the source's (not a fresh model's ~ln(vocab)).
Every source kind (archive, run dir, art://, hf:DIR), ``ignore`` globs, the strict checks
(exit 2, no run directory), the vocabulary rule, lineage and resume are checked here.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import read_metrics, run_cli, tiny_overrides, train_losses

pytestmark = pytest.mark.integration


def _finetune(stoker_cmd, data: Path, out: Path, *extra: str, steps: int = 2,
              recipe: str = "gpt-char-finetune"):
    return run_cli(stoker_cmd, "train", recipe, *tiny_overrides(data, out),
                   "model.dropout=0.0", f"trainer.max_steps={steps}",
                   "checkpoint.every_steps=1", *extra, "--yes")


def _weights(run_or_step: Path) -> dict[str, torch.Tensor]:
    step = run_or_step
    if (run_or_step / "checkpoints").is_dir():
        step = sorted((run_or_step / "checkpoints").glob("step-*"))[-1]
    return load_file(step / "model.safetensors")


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> None:
    keys = sorted(keys if keys is not None else a)
    assert keys
    for k in keys:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def archive(gpt_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arc") / "base.stoker"
    exe = [str(Path(sys.executable).with_name("stoker"))]
    run_cli(exe, "pack", "--checkpoint", str(gpt_run), "--output", str(out), check=True)
    return out


def test_archive_weights_load_bitwise_and_first_loss_is_the_sources(
        stoker_cmd, char_data: Path, gpt_run: Path, archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    r = _finetune(stoker_cmd, char_data, out, f"init_from={archive}", "optim.lr=0")
    assert r.returncode == 0, r.stderr
    _assert_same(_weights(out), _weights(gpt_run))
    # a fresh start: steps 1..2 of a new schedule, not a resume of the source's step 10
    assert sorted(train_losses(out)) == [1, 2]
    # the source's eval loss, exactly (same weights, same eval windows); a fresh model
    # would start near ln(vocab)
    evals = [r["eval/loss"] for r in read_metrics(out) if "eval/loss" in r]
    source_eval = [r["eval/loss"] for r in read_metrics(gpt_run) if "eval/loss" in r][-1]
    assert evals and evals[-1] == source_eval
    vocab = json.loads((char_data / "metadata.json").read_text())["vocab_size"]
    assert abs(train_losses(out)[1] - train_losses(gpt_run)[10]) < 0.1 < \
        math.log(vocab) - train_losses(out)[1]
    rec = json.loads((out / "init_from.json").read_text())
    assert rec["kind"] == "archive" and rec["path"] == str(archive.resolve())
    assert len(rec["manifest_sha256"]) == 64 and len(rec["weights_sha256"]) == 64
    assert "init_from" in (out / "logs" / "train.log").read_text()


def test_run_dir_source_with_ignore_glob_keeps_fresh_init(
        stoker_cmd, char_data: Path, gpt_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    r = _finetune(stoker_cmd, char_data, out, "optim.lr=0", "init_from={path: "
                  f"{gpt_run}, ignore: ['layers.1.*']}}")
    assert r.returncode == 0, r.stderr
    got, src = _weights(out), _weights(gpt_run)
    layer1 = [k for k in src if k.startswith("layers.1.")]
    assert layer1
    _assert_same(got, src, [k for k in src if k not in layer1])
    assert all(not torch.equal(got[k], src[k]) for k in layer1)
    rec = json.loads((out / "init_from.json").read_text())
    assert rec["kind"] == "checkpoint" and rec["ignored"] == sorted(layer1)

    # a glob that matches nothing is a typo, not a silent no-op
    bad = tmp_path / "bad"
    r = _finetune(stoker_cmd, char_data, bad, "init_from={path: "
                  f"{gpt_run}, ignore: ['layer.1.*']}}")
    assert r.returncode == 2 and "'layer.1.*' match no weight" in r.stderr
    assert "Traceback" not in r.stderr and not bad.exists()


def test_shape_mismatch_and_missing_keys_exit_2_with_nothing_written(
        stoker_cmd, char_data: Path, gpt_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "wide"
    r = _finetune(stoker_cmd, char_data, out, f"init_from={gpt_run}", "model.dim=64")
    assert r.returncode == 2, r.stderr
    assert "shapes differ" in r.stderr and "tok_emb.weight: source (" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()

    deep = tmp_path / "deep"
    r = _finetune(stoker_cmd, char_data, deep, f"init_from={gpt_run}", "model.n_layers=3")
    assert r.returncode == 2 and "the source lacks" in r.stderr
    assert "layers.2.attn.wqkv.weight" in r.stderr and not deep.exists()

    # strict=false loads what matches and keeps the fresh init of the rest
    r = _finetune(stoker_cmd, char_data, deep, "optim.lr=0",
                  f"init_from={{path: {gpt_run}, strict: false}}", "model.n_layers=3")
    assert r.returncode == 0, r.stderr
    src = _weights(gpt_run)
    _assert_same(_weights(deep), src, list(src))
    rec = json.loads((deep / "init_from.json").read_text())
    assert any(k.startswith("layers.2.") for k in rec["kept_init"])


def test_art_uri_source_is_recorded_in_the_models_lineage(
        stoker_cmd, char_data: Path, gpt_run: Path, archive: Path, tmp_path: Path) -> None:
    from stoker.artifacts.registry import resolve_registry

    run_cli(stoker_cmd, "pack", "--checkpoint", str(gpt_run), "--output",
            str(tmp_path / "p.stoker"), "--publish", "base-model", check=True)
    out = tmp_path / "ft"
    r = _finetune(stoker_cmd, char_data, out, "init_from=art://base-model:latest",
                  "optim.lr=0", "register_artifact=true")
    assert r.returncode == 0, r.stderr
    _assert_same(_weights(out), _weights(gpt_run))
    reg = resolve_registry(None)
    model = reg.load("art://gpt-char-finetune:latest")
    assert "art://base-model:v1" in model.producer.used_artifacts
    assert model.metadata["init_from"]["artifact"] == "art://base-model:v1"
    assert model.metadata["init_from"]["weights_sha256"] == \
        json.loads((out / "init_from.json").read_text())["weights_sha256"]

    # a model artifact the trainer published (a checkpoint, not an archive) works too
    again = tmp_path / "again"
    r = _finetune(stoker_cmd, char_data, again, "init_from=art://gpt-char-finetune:v1",
                  "optim.lr=0")
    assert r.returncode == 0, r.stderr
    _assert_same(_weights(again), _weights(gpt_run))
    rec = json.loads((again / "init_from.json").read_text())
    assert rec["kind"] == "checkpoint" and rec["artifact"] == "art://gpt-char-finetune:v1"


def test_hf_dir_needs_resize_vocab_for_a_new_vocabulary(
        stoker_cmd, char_data: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_hf_interop import _tiny_llama

    hf_dir = tmp_path / "llama"
    hf = _tiny_llama(hf_dir, tie_word_embeddings=False)
    shape = ["model.n_heads=4", "model.n_kv_heads=2", "model.ffn_hidden=64",
             "model.tie_weights=false"]
    refused = tmp_path / "refused"
    r = _finetune(stoker_cmd, char_data, refused, f"init_from=hf:{hf_dir}", *shape)
    assert r.returncode == 2, r.stderr
    vocab = json.loads((char_data / "metadata.json").read_text())["vocab_size"]
    assert f"vocabulary has {hf.config.vocab_size} tokens but this run's data has {vocab}" \
        in r.stderr and "resize_vocab=true" in r.stderr and not refused.exists()

    out = tmp_path / "ft"
    r = _finetune(stoker_cmd, char_data, out, "optim.lr=0", *shape,
                  f"init_from={{path: 'hf:{hf_dir}', resize_vocab: true}}")
    assert r.returncode == 0, r.stderr
    got = _weights(out)
    src = hf.state_dict()
    assert torch.equal(got["layers.1.ffn.w2.weight"], src["model.layers.1.mlp.down_proj.weight"])
    assert torch.equal(got["norm.weight"], src["model.norm.weight"])
    n = min(vocab, hf.config.vocab_size)
    assert torch.equal(got["tok_emb.weight"][:n], src["model.embed_tokens.weight"][:n])
    assert torch.equal(got["lm_head.weight"][:n], src["lm_head.weight"][:n])
    rec = json.loads((out / "init_from.json").read_text())
    assert rec["kind"] == "hf" and set(rec["resized"]) == {"tok_emb.weight", "lm_head.weight"}
    assert "resized for the new vocabulary" in (out / "logs" / "train.log").read_text()
    assert not list(tmp_path.glob("*.stoker"))  # converted in memory


def test_resume_does_not_reapply_init_from(
        stoker_cmd, char_data: Path, archive: Path, tmp_path: Path) -> None:
    src = tmp_path / "moving.stoker"
    shutil.copy(archive, src)
    out = tmp_path / "ft"
    r = _finetune(stoker_cmd, char_data, out, f"init_from={src}",
                  "trainer.stop_after_steps=2", steps=4)
    assert r.returncode == 0, r.stderr
    src.unlink()  # resuming must not need the source again
    r = _finetune(stoker_cmd, char_data, out, f"init_from={src}", steps=4)
    assert r.returncode == 0, r.stderr
    assert "not applied: resuming" in (out / "logs" / "train.log").read_text()
    whole = tmp_path / "whole"
    shutil.copy(archive, src)
    r = _finetune(stoker_cmd, char_data, whole, f"init_from={src}", steps=4)
    assert r.returncode == 0, r.stderr
    _assert_same(_weights(out), _weights(whole))
    assert sorted(train_losses(out)) == [1, 2, 3, 4]
