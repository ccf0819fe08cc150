"""Callbacks: ordering, errors never swallowed, and the built-ins' behaviour and state."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from stoker.errors import RunError
from stoker.train.callbacks import (
    HOOKS,
    Callback,
    CallbackList,
    EarlyStopping,
    LRMonitor,
    NaNGuard,
    SampleGeneration,
    Throughput,
    peak_memory_mb,
)
from stoker.train.checkpoint import CheckpointManager


def fake_trainer(tmp_path: Path, **kw) -> SimpleNamespace:
    """The trainer attributes a callback may use (stoker.train.view.TrainerView), nothing more."""
    model = torch.nn.Linear(2, 2)
    base = dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scheduler=None,
        step=0,
        max_steps=100,
        should_stop=False,
        stop_reason="",
        stop_failed=False,
        logger=None,
        run_dir=tmp_path,
        tokenizer=None,
        device=torch.device("cpu"),
        checkpoints=CheckpointManager(tmp_path / "checkpoints"),
        config={},
        is_rank_zero=True,
    )
    base.update(kw)
    return SimpleNamespace(**base)


class Recorder(Callback):
    def __init__(self, log: list, tag: str):
        self.log, self.tag = log, tag

    def __getattribute__(self, name):
        if name in HOOKS:
            return lambda *a: object.__getattribute__(self, "log").append(
                (object.__getattribute__(self, "tag"), name)
            )
        return object.__getattribute__(self, name)


def test_hooks_called_in_order_on_every_callback(tmp_path: Path) -> None:
    calls: list = []
    cbs = CallbackList([Recorder(calls, "a"), Recorder(calls, "b")])
    t = fake_trainer(tmp_path)
    cbs.on_fit_start(t)
    cbs.on_step_start(t, 0)
    cbs.on_step_end(t, 1, {})
    cbs.on_eval_end(t, 1, {})
    cbs.on_checkpoint_save(t, {})
    cbs.on_checkpoint_load(t, {})
    cbs.on_fit_end(t)
    assert calls[:4] == [("a", "on_fit_start"), ("b", "on_fit_start"), ("a", "on_step_start"), ("b", "on_step_start")]
    assert len(calls) == 14


def test_callback_exception_is_wrapped_with_name_and_hook(tmp_path: Path) -> None:
    class Broken(Callback):
        def on_step_end(self, trainer, step, metrics):
            raise ZeroDivisionError("oops")

    after = []

    class After(Callback):
        def on_step_end(self, trainer, step, metrics):
            after.append(step)

    cbs = CallbackList([Broken(), After()])
    with pytest.raises(RunError, match="callback Broken failed in on_step_end: ZeroDivisionError: oops") as ei:
        cbs.on_step_end(fake_trainer(tmp_path), 3, {})
    assert isinstance(ei.value.__cause__, ZeroDivisionError)
    assert after == []  # the run stops: later callbacks do not run as if nothing happened


def test_on_exception_tells_everyone_then_raises_first_failure(tmp_path: Path) -> None:
    seen = []

    class Bad(Callback):
        name = "bad-one"

        def on_exception(self, trainer, exc):
            raise ValueError("cannot clean up")

    class Good(Callback):
        def on_exception(self, trainer, exc):
            seen.append(str(exc))

    with pytest.raises(RunError, match="callback bad-one failed in on_exception"):
        CallbackList([Bad(), Good()]).on_exception(fake_trainer(tmp_path), KeyError("x"))
    assert seen == ["'x'"]


def test_state_dicts_keyed_by_name_and_duplicates_numbered(tmp_path: Path) -> None:
    a, b = EarlyStopping(patience=2), EarlyStopping(patience=5)
    a.best, b.best = 1.0, 2.0
    cbs = CallbackList([a, b, LRMonitor()])
    state = cbs.state_dict()
    assert set(state) == {"EarlyStopping", "EarlyStopping#2", "LRMonitor"}
    fresh = CallbackList([EarlyStopping(patience=2), EarlyStopping(patience=5), Throughput()])
    fresh.load_state_dict(state)
    assert [cb.best for cb in fresh.callbacks[:2]] == [1.0, 2.0]


# ---------------------------------------------------------------- EarlyStopping


def test_early_stopping_stops_after_patience_and_resumes_exactly(tmp_path: Path) -> None:
    vals = [3.0, 2.0, 2.05, 1.999, 2.5, 2.6, 1.0]
    t = fake_trainer(tmp_path)
    es = EarlyStopping(monitor="val/loss", patience=3, min_delta=0.01)
    stop_at = None
    for i, v in enumerate(vals, 1):
        es.on_eval_end(t, i * 10, {"val/loss": v})
        if t.should_stop:
            stop_at = i * 10
            break
    assert stop_at == 50  # 2.05, 1.999 (< min_delta better), 2.5: three evaluations
    assert "val/loss did not improve" in t.stop_reason and "best 2.0 at step 20" in t.stop_reason
    assert t.stop_failed is False  # a normal stop: the trainer saves and ends with 0

    # interrupted after the 3rd evaluation and resumed from its checkpoint
    t2 = fake_trainer(tmp_path)
    es_a = EarlyStopping(monitor="val/loss", patience=3, min_delta=0.01)
    for i, v in enumerate(vals[:3], 1):
        es_a.on_eval_end(t2, i * 10, {"val/loss": v})
    saved = CheckpointManager(tmp_path / "c").save(30, {"callbacks": CallbackList([es_a]).state_dict()})
    es_b = EarlyStopping(monitor="val/loss", patience=3, min_delta=0.01)
    CallbackList([es_b]).load_state_dict(CheckpointManager(tmp_path / "c").load(saved)["callbacks"])
    for i, v in enumerate(vals[3:], 4):
        es_b.on_eval_end(t2, i * 10, {"val/loss": v})
        if t2.should_stop:
            break
    assert t2.stop_reason == t.stop_reason


def test_early_stopping_max_mode_and_missing_metric(tmp_path: Path) -> None:
    t = fake_trainer(tmp_path)
    es = EarlyStopping(monitor="acc", mode="max", patience=1)
    es.on_eval_end(t, 1, {"acc": 0.5})
    es.on_eval_end(t, 2, {"acc": 0.6})
    assert not t.should_stop
    es.on_eval_end(t, 3, {"acc": 0.6})
    assert t.should_stop
    with pytest.raises(RunError, match="callback EarlyStopping failed in on_eval_end.*'val/loss'.*acc, loss"):
        CallbackList([EarlyStopping()]).on_eval_end(t, 4, {"acc": 1.0, "loss": 2.0})
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="best")  # type: ignore[arg-type]


# ---------------------------------------------------------------- LRMonitor


def test_lr_monitor_logs_every_param_group(tmp_path: Path) -> None:
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD([{"params": [m.weight]}, {"params": [m.bias], "lr": 0.01}], lr=0.1)
    metrics: dict = {}
    LRMonitor().on_step_end(fake_trainer(tmp_path, optimizer=opt), 1, metrics)
    assert metrics == {"lr": 0.1, "lr/group0": 0.1, "lr/group1": 0.01}
    one: dict = {}
    LRMonitor().on_step_end(fake_trainer(tmp_path), 1, one)
    assert one == {"lr": 0.1}


# ---------------------------------------------------------------- NaNGuard


@pytest.mark.parametrize("metrics", [{"loss": math.nan, "grad_norm": 1.0}, {"loss": 1.0, "grad_norm": math.inf}])
def test_nan_guard_stops_without_saving_and_names_last_good(tmp_path: Path, metrics) -> None:
    t = fake_trainer(tmp_path)
    good = t.checkpoints.save(10, {"model": {"w": torch.ones(1)}})
    # a later checkpoint saved before finiteness was recorded (an older stoker) is not named
    old = t.checkpoints.save(11, {"model": {"w": torch.ones(1)}})
    marker = json.loads((old / "COMMITTED").read_text())
    del marker["finite"]
    (old / "COMMITTED").write_text(json.dumps(marker))
    guard = NaNGuard()
    cbs = CallbackList([guard])
    cbs.on_step_end(t, 10, {"loss": 1.0, "grad_norm": 2.0})
    assert not t.should_stop
    cbs.on_step_end(t, 11, dict(metrics))
    assert t.should_stop and t.stop_failed
    assert "non-finite value at step 11" in t.stop_reason
    assert f"the last finite checkpoint is {good}; resume from it with resume={good}" \
        in t.stop_reason
    # belt and braces: a save attempted after the blow-up is refused
    with pytest.raises(RunError, match="NaNGuard failed in on_checkpoint_save: RuntimeError: refusing"):
        cbs.on_checkpoint_save(t, {})
    assert t.checkpoints.latest() == old and t.checkpoints.latest_finite() == good


def test_nan_guard_accepts_tensors(tmp_path: Path) -> None:
    t = fake_trainer(tmp_path)
    NaNGuard().on_step_end(t, 1, {"loss": torch.tensor(float("nan"))})
    assert t.should_stop and "no finite checkpoint was saved before it" in t.stop_reason


# ---------------------------------------------------------------- Throughput


def test_throughput_adds_speed_and_memory(tmp_path: Path) -> None:
    t = fake_trainer(tmp_path)
    tp = Throughput()
    tp.on_fit_start(t)
    tp.on_step_start(t, 0)
    sum(range(20000))
    metrics = {"loss": 1.0, "num_tokens": 4096.0, "num_samples": 16.0, "data_wait_s": 0.001}
    tp.on_step_end(t, 1, metrics)
    assert metrics["step_time_s"] > 0
    assert metrics["tokens_per_s"] == pytest.approx(4096 / metrics["step_time_s"])
    assert metrics["samples_per_s"] == pytest.approx(16 / metrics["step_time_s"])
    assert metrics["data_wait_s"] == 0.001
    assert metrics["peak_mem_mb"] > 10  # this process's peak RSS, in MiB
    assert peak_memory_mb("cpu") == pytest.approx(metrics["peak_mem_mb"], rel=0.5)


def test_throughput_uses_cuda_peak_on_cuda(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20)
    assert peak_memory_mb(torch.device("cuda", 0)) == 3.0


# ---------------------------------------------------------------- SampleGeneration


@pytest.fixture
def lm_trainer(tmp_path: Path) -> SimpleNamespace:
    from stoker.data.tokenizers import CharTokenizer
    from stoker.models import GPTConfig, build_model

    tok = CharTokenizer.from_texts(["def f(x):\n    return x + 1\n"])
    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=tok.vocab_size, n_layers=1, dim=16, n_heads=2, max_seq_len=64))

    class TextLog:
        def __init__(self):
            self.texts = []

        def log(self, metrics, step):
            pass

        def log_text(self, name, text, step):
            self.texts.append((name, step, text))

        def close(self):
            pass

    return fake_trainer(tmp_path, model=model, tokenizer=tok, logger=TextLog(),
                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_sample_generation_writes_samples_and_keeps_training_rng(lm_trainer) -> None:
    t = lm_trainer
    sg = SampleGeneration(every_n_steps=2, prompt="def ", max_new_tokens=8, temperature=1.0)
    cbs = CallbackList([sg])
    cbs.on_fit_start(t)
    torch.manual_seed(42)
    expected_next = torch.rand(3)
    torch.manual_seed(42)
    for step in (1, 2, 3, 4):
        t.step = step
        cbs.on_step_end(t, step, {})
    assert torch.equal(torch.rand(3), expected_next)  # sampling did not move the RNG
    assert t.model.training  # back in training mode
    recs = [json.loads(x) for x in (t.run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4]
    assert all(r["text"] == "def " + r["completion"] and len(r["completion"]) <= 8 for r in recs)
    assert any(r["completion"] for r in recs)
    assert [(n, s) for n, s, _ in t.logger.texts] == [("samples", 2), ("samples", 4)]
    assert sg.last_sample == recs[-1]["text"]
    cbs.on_fit_end(t)  # step 4 already sampled: nothing new
    assert len((t.run_dir / "samples.jsonl").read_text().splitlines()) == 2


def test_sample_generation_resume_drops_samples_after_checkpoint(lm_trainer) -> None:
    t = lm_trainer
    sg = SampleGeneration(every_n_steps=1, prompt="x", max_new_tokens=2)
    for s in (1, 2, 3):
        sg.on_step_end(t, s, {})
    t.step = 1  # resumed from the step-1 checkpoint
    sg.on_fit_start(t)
    steps = [json.loads(x)["step"] for x in (t.run_dir / "samples.jsonl").read_text().splitlines()]
    assert steps == [1]


def test_sample_generation_is_rank_zero_only_and_needs_a_tokenizer(lm_trainer, tmp_path) -> None:
    t = lm_trainer
    t.is_rank_zero = False
    assert SampleGeneration(every_n_steps=1).sample(t, 1) is None
    assert not (t.run_dir / "samples.jsonl").exists()
    t.is_rank_zero, t.tokenizer = True, None
    with pytest.raises(RunError, match="SampleGeneration failed in on_step_end.*needs a tokenizer"):
        CallbackList([SampleGeneration(every_n_steps=1)]).on_step_end(t, 1, {})
