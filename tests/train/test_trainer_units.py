"""Unit tests of the trainer's small parts: schedule, keys, objectives, precision, run dirs."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from stoker.errors import ConfigError, UserError
from stoker.train.keys import check_keys, get_by_key
from stoker.train.losses import CrossEntropy
from stoker.train.metrics import Accuracy, Perplexity
from stoker.train.precision import Precision
from stoker.train.run_dir import plan_run_dir
from stoker.train.trainer import lr_factor


def test_schedule_warms_up_then_decays_to_min_ratio() -> None:
    f = [lr_factor(i, max_steps=100, warmup=10, kind="cosine", min_ratio=0.1) for i in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warmup
    assert f[100] == pytest.approx(0.1)
    assert lr_factor(50, max_steps=100, warmup=0, kind="constant", min_ratio=0.1) == 1.0
    assert lr_factor(100, max_steps=100, warmup=0, kind="linear", min_ratio=0.0) == 0.0


def test_keys_resolve_nested_paths_and_typos_get_a_suggestion() -> None:
    ctx = {"batch": {"labels": 1, "input_ids": 2}, "preds": {"logits": 3, "aux": [4, 5]}}
    assert get_by_key(ctx, "preds.logits") == 3
    assert get_by_key(ctx, "preds.aux[1]") == 5
    with pytest.raises(ConfigError) as e:
        check_keys(ctx, [("losses.ce.logits", "preds.logit"), ("losses.ce.labels", "batch.labels")])
    msg = str(e.value)
    assert "losses.ce.logits" in msg and "Did you mean 'preds.logits'" in msg
    assert "batch.input_ids" in msg  # the available keys are listed
    assert "losses.ce.labels" not in msg


def test_cross_entropy_and_metrics_on_known_values() -> None:
    logits = torch.tensor([[[10.0, 0.0], [0.0, 10.0]]])
    labels = torch.tensor([[0, 0]])
    loss = CrossEntropy()(logits=logits, labels=labels)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-10)) + 10 + math.log1p(math.exp(-10))) / 2, rel=1e-5)
    acc = Accuracy()
    acc.update(logits=logits, labels=labels)
    assert acc.compute() == 0.5
    ppl = Perplexity()
    ppl.update(logits=logits, labels=labels)
    assert ppl.compute() == pytest.approx(math.exp(loss.item()), rel=1e-5)


def test_fp16_on_cpu_is_refused_with_an_explanation_and_bf16_autocasts() -> None:
    with pytest.raises(UserError, match="fp16-mixed needs a CUDA GPU.*bf16-mixed"):
        Precision("fp16-mixed", torch.device("cpu"))
    p = Precision("bf16-mixed", torch.device("cpu"))
    with p.autocast():
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    assert Precision("fp32", torch.device("cpu")).scaler is None


def test_run_dir_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_OUTPUTS", str(tmp_path / "outputs"))
    out = tmp_path / "out"
    assert plan_run_dir(name="x", output_dir=str(out), resume="auto").resume_from is None
    (out / "checkpoints" / "step-00000005").mkdir(parents=True)
    (out / "config.yaml").write_text("a: 1\n")
    auto = plan_run_dir(name="x", output_dir=str(out), resume="auto")
    assert auto.run_dir == out and auto.resume_from == out / "checkpoints"
    never = plan_run_dir(name="x", output_dir=str(out), resume="never")
    assert never.resume_from is None and never.run_dir != out and not never.run_dir.exists()
    step = out / "checkpoints" / "step-00000005"
    assert plan_run_dir(name="x", output_dir=None, resume=str(step)).run_dir == out
    with pytest.raises(UserError, match="resume=latest"):
        plan_run_dir(name="x", output_dir=None, resume="latest")
    fresh = plan_run_dir(name="x", output_dir=None, resume="auto")
    assert fresh.run_dir.parent == tmp_path / "outputs" / "x"
    with pytest.raises(UserError, match="no such checkpoint"):
        plan_run_dir(name="x", output_dir=None, resume=str(tmp_path / "nope"))
