"""Metric loggers: metrics.jsonl (resume-safe), TensorBoard read back with its own reader."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stoker.errors import UserError
from stoker.track import loggers as lg
from stoker.track.loggers import JsonlLogger, MetricLogger, TensorBoardLogger, make_loggers


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_jsonl_one_object_per_line_flushed_each_log(tmp_path: Path) -> None:
    import torch

    log = JsonlLogger(tmp_path)
    log.log({"loss": torch.tensor(2.5), "lr": 1e-3}, step=1)
    # readable before close: every log is flushed
    assert lines(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 2.5, "lr": 0.001}]
    log.log({"loss": float("nan"), "grad_norm": float("inf")}, step=2)
    log.close()
    raw = (tmp_path / "metrics.jsonl").read_text().splitlines()[1]
    assert json.loads(raw) == {"step": 2, "loss": "nan", "grad_norm": "inf"}  # strict JSON
    assert isinstance(log, MetricLogger)


def test_resume_drops_steps_after_the_checkpoint(tmp_path: Path) -> None:
    log = JsonlLogger(tmp_path)
    for s in range(1, 11):
        log.log({"loss": 1.0 / s}, s)
    log.close()
    # crashed after step 10, last checkpoint at step 6: steps 7.. will be trained again
    log = JsonlLogger(tmp_path, resume_step=6)
    for s in range(7, 9):
        log.log({"loss": 0.5}, s)
    log.close()
    steps = [r["step"] for r in lines(tmp_path / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]


def test_torn_last_line_from_kill_is_dropped(tmp_path: Path) -> None:
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    log = JsonlLogger(tmp_path)
    log.log({"loss": 0.1}, 2)
    log.close()
    assert [r["step"] for r in lines(p)] == [1, 2]
    p.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    JsonlLogger(tmp_path, resume_step=5).close()
    assert [r["step"] for r in lines(p)] == [1]


def test_truncate_after_while_open(tmp_path: Path) -> None:
    log = JsonlLogger(tmp_path)
    for s in range(5):
        log.log({"x": s}, s)
    assert log.truncate_after(2) == 2
    log.log({"x": 9}, 3)
    log.close()
    assert [r["step"] for r in lines(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3]


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {
        tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
    }


def test_tensorboard_scalars_and_text_read_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path, {"model": {"dim": 32}})
    for s in range(1, 4):
        tb.log({"loss": 1.0 / s, "lr": 0.1}, s)
    tb.log_text("samples", "def f():\n    return 1", 3)
    tb.close()
    sc = _scalars(tmp_path / "tensorboard")
    assert sc["loss"] == [(1, 1.0), (2, 0.5), (3, 0.333333)]
    assert [s for s, _ in sc["lr"]] == [1, 2, 3]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert any("samples" in t for t in tags) and any("config" in t for t in tags)


def test_tensorboard_resume_purges_the_overlap(tmp_path: Path) -> None:
    tb = TensorBoardLogger(tmp_path)
    for s in range(1, 11):
        tb.log({"loss": float(s)}, s)
    tb.close()
    tb = TensorBoardLogger(tmp_path, resume_step=6)
    for s in range(7, 9):
        tb.log({"loss": 100.0 + s}, s)
    tb.close()
    assert _scalars(tmp_path / "tensorboard")["loss"] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 6.0), (7, 107.0), (8, 108.0)
    ]


def test_make_loggers_fans_out_and_jsonl_is_always_on(tmp_path: Path) -> None:
    out = make_loggers(["tensorboard"], tmp_path, {"seed": 1})
    assert list(out.loggers) == ["jsonl", "tensorboard"]
    out.log({"loss": 1.25}, 1)
    out.log_text("samples", "hello", 1)  # jsonl has no text: skipped, no error
    out.close()
    assert lines(tmp_path / "metrics.jsonl") == [{"step": 1, "loss": 1.25}]
    assert _scalars(tmp_path / "tensorboard")["loss"] == [(1, 1.25)]


def test_make_loggers_accepts_string_and_mapping_and_passes_resume_step(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    out = make_loggers("jsonl", tmp_path, None, resume_step=1)
    out.close()
    assert lines(tmp_path / "metrics.jsonl") == [{"step": 1}]
    out = make_loggers({"jsonl": {"filename": "m2.jsonl"}}, tmp_path, None)
    out.log({"a": 1}, 0)
    out.close()
    assert lines(tmp_path / "m2.jsonl") == [{"step": 0, "a": 1.0}]


def test_unknown_logger_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown logger 'tensorbord'; valid loggers are: jsonl, tensorboard, wandb, mlflow"):
        make_loggers(["tensorbord"], tmp_path, None)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_logger_that_cannot_import_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(lg.LOGGERS, "wandb", "stoker_no_such_module.x:WandbLogger")
    with pytest.raises(UserError, match=r"logger 'wandb' cannot be loaded.*pip install 'stoker\[wandb\]'"):
        make_loggers(["wandb"], tmp_path, None)


def test_import_string_loggers_get_run_dir_config_and_options(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    mod = types.ModuleType("stoker_test_fake_logger")

    class Rec:
        def __init__(self, run_dir, config, **options):
            self.args = (run_dir, config, options)
            self.logged = []

        def log(self, metrics, step):
            self.logged.append((step, dict(metrics)))

        def close(self):
            self.closed = True

    mod.Rec = Rec
    monkeypatch.setitem(sys.modules, "stoker_test_fake_logger", mod)
    monkeypatch.setitem(lg.LOGGERS, "mlflow", "stoker_test_fake_logger:Rec")
    out = make_loggers({"mlflow": {"experiment": "e"}}, tmp_path, {"a": 1}, resume_step=3)
    rec = out["mlflow"]
    assert rec.args == (tmp_path, {"a": 1}, {"experiment": "e"})  # no resume_step: not accepted
    out.log({"loss": 2}, 4)
    out.close()
    assert rec.logged == [(4, {"loss": 2.0})] and rec.closed


@pytest.mark.integration
def test_fan_out_to_the_real_mlflow_logger(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("stoker.track.mlflow_logger")
    uri = (tmp_path / "mlruns").as_uri()
    out = make_loggers({"mlflow": {"tracking_uri": uri}}, tmp_path, {"seed": 1})
    out.log({"loss": 2.0}, 1)
    out.log({"loss": 1.0}, 2)
    out.close()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    hist = client.get_metric_history(runs[0].info.run_id, "loss")
    assert [(m.step, m.value) for m in hist] == [(1, 2.0), (2, 1.0)]
    assert [r["step"] for r in lines(tmp_path / "metrics.jsonl")] == [1, 2]
