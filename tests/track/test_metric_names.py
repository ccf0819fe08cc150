"""Metric names every backend accepts, checked with the real names of every built-in recipe.

Each recipe is trained tiny through the real CLI (its own callbacks and metrics on); its
metrics.jsonl is then replayed, record by record, into each real logger (TensorBoard, W&B
offline, MLflow's local store) built by `make_loggers`, and read back with that tool's own
reader: every metric is there under the name `metric_name` gives it, with the same values.
The names are the runs' own, never a hand-picked list. One gpt-char run also trains with all
the loggers on at once, the command that crashed MLflow (`lr` beside `lr/group0`)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stoker.track.loggers import metric_name
from tests.track.test_wandb_mlflow import _wandb_records

pytestmark = pytest.mark.integration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import tiny_corpus_text  # noqa: E402

RECIPES = ["gpt-char", "gpt-bpe", "rnn-char", "digits-cnn"]
SMALL_LM = ["model.n_layers=1", "model.dim=16", "data.seq_len=16", "data.batch_size=4"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    from stoker.data.prepare import prepare
    from stoker.data.tokenizers import train_tokenizer

    root = tmp_path_factory.mktemp("names")
    src = root / "corpus.txt"
    src.write_text(tiny_corpus_text(), encoding="utf-8")
    tok = train_tokenizer([src.read_text(encoding="utf-8")], type="bpe", vocab_size=300)
    return {
        "char": prepare([str(src)], root / "char", type="char", split_ratios=(0.9, 0.1, 0.0), workers=1),
        "bpe": prepare([str(src)], root / "bpe", type="subword", tokenizer=tok,
                       split_ratios=(0.9, 0.1, 0.0), workers=1),
    }


def _overrides(recipe: str, datasets: dict[str, Path]) -> list[str]:
    shrink = {
        "gpt-char": [f"data.path={datasets['char']}", *SMALL_LM, "model.n_heads=2", "model.n_kv_heads=1"],
        "gpt-bpe": [f"data.path={datasets['bpe']}", *SMALL_LM, "model.n_heads=2", "model.n_kv_heads=1"],
        "rnn-char": [f"data.path={datasets['char']}", *SMALL_LM],
        "digits-cnn": [],
    }[recipe]
    # the recipe's own callbacks and metrics stay on: their names are what is under test
    return [*shrink, "trainer.max_steps=4", "trainer.eval_every=2", "trainer.log_every=1",
            "checkpoint.every_steps=2", "register_artifact=false", "trainer.num_threads=1"]


def _mlflow_history(run_dir: Path) -> dict[str, dict[int, float]]:
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    run_id = (run_dir / "mlflow_run_id.txt").read_text().strip()
    names = client.get_run(run_id).data.metrics
    return {n: {m.step: m.value for m in client.get_metric_history(run_id, n)} for n in names}


def _wandb_history(run_dir: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for rec in _wandb_records(run_dir):
        if rec.WhichOneof("record_type") != "history":
            continue
        # one-part keys are metrics; longer ones are parts of media (the samples' HTML)
        items = {(i.key or i.nested_key[0]): json.loads(i.value_json) for i in rec.history.item
                 if i.key or len(i.nested_key) == 1}
        step = items.pop("_step")
        for k, v in items.items():
            if not k.startswith("_") and isinstance(v, (int, float)):
                out.setdefault(k, {})[step] = float(v)
    return out


def _tensorboard_history(logdir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _same(a: float, b: float) -> bool:
    # TensorBoard stores float32
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) \
        or math.isclose(a, b, rel_tol=2**-23)


def _train(stoker_cmd, recipe: str, out: Path, datasets: dict[str, Path], loggers: str):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", WANDB_MODE="offline")
    return subprocess.run([*stoker_cmd, "train", recipe, f"output_dir={out}",
                           *_overrides(recipe, datasets), f"loggers=[{loggers}]", "--yes"],
                          capture_output=True, text=True, env=env, timeout=400)


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _series(records: list[dict]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for rec in records:
        for k, v in rec.items():
            if k != "step":
                out.setdefault(k, {})[rec["step"]] = float(v)
    return out


def _compare(backend: str, got: dict[str, dict[int, float]],
             jsonl: dict[str, dict[int, float]]) -> list[str]:
    problems = []
    for name, series in jsonl.items():
        mapped = metric_name(backend, name)
        if mapped not in got:
            problems.append(f"{backend}: no {mapped!r} (metric {name!r})")
            continue
        for step, value in series.items():
            if step not in got[mapped] or not _same(got[mapped][step], value):
                problems.append(f"{backend}: {mapped!r} at step {step} is "
                                f"{got[mapped].get(step)}, metrics.jsonl says {value}")
    extra = set(got) - {metric_name(backend, n) for n in jsonl}
    if extra:
        problems.append(f"{backend}: metrics not in metrics.jsonl: {sorted(extra)}")
    return problems


READERS = {"tensorboard": lambda d: _tensorboard_history(d / "tensorboard"),
           "wandb": lambda d: _wandb_history(d), "mlflow": lambda d: _mlflow_history(d)}


@pytest.fixture(scope="module")
def recipe_records(stoker_cmd_module, tmp_path_factory, datasets) -> dict[str, list[dict]]:
    """metrics.jsonl of a tiny real run of every built-in recipe."""
    out = {}
    for recipe in RECIPES:
        run_dir = tmp_path_factory.mktemp(recipe)
        r = _train(stoker_cmd_module, recipe, run_dir / "run", datasets, "jsonl")
        assert r.returncode == 0, (recipe, r.stderr[-3000:])
        out[recipe] = _records(run_dir / "run")
    return out


@pytest.fixture(scope="module")
def stoker_cmd_module() -> list[str]:
    exe = Path(sys.executable).with_name("stoker")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stoker"]


def test_the_recipes_log_what_the_loggers_are_tested_with(recipe_records):
    for recipe, records in recipe_records.items():
        names = set(_series(records))
        assert {"loss", "lr", "eval/loss"} <= names, (recipe, sorted(names))
    assert any("/" in n for recs in recipe_records.values() for n in _series(recs))


@pytest.mark.parametrize("backend", sorted(READERS))
def test_every_logger_takes_the_real_metric_names_of_every_recipe(recipe_records, tmp_path,
                                                                  backend):
    from stoker.track.loggers import make_loggers

    problems = []
    for recipe, records in recipe_records.items():
        run_dir = tmp_path / recipe
        logger = make_loggers([backend], run_dir, {"name": recipe})
        try:
            for rec in records:  # as the trainer logged them, step by step
                logger.log({k: v for k, v in rec.items() if k != "step"}, rec["step"])
        finally:
            logger.close()
        problems += [f"{recipe}: {p}" for p in _compare(backend, READERS[backend](run_dir),
                                                         _series(records))]
        assert _series(_records(run_dir)) == _series(records)  # jsonl: the names as logged
    assert not problems, "\n".join(problems)


def test_gpt_char_trains_with_every_logger_at_once(stoker_cmd, tmp_path, datasets):
    """`stoker train gpt-char 'loggers=[tensorboard,wandb,mlflow]'` crashed at the first log."""
    out = tmp_path / "run"
    r = _train(stoker_cmd, "gpt-char", out, datasets, "tensorboard,wandb,mlflow")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    jsonl = _series(_records(out))
    assert "lr/group0" in jsonl and "lr" in jsonl
    problems = [p for backend, read in READERS.items() for p in _compare(backend, read(out), jsonl)]
    assert not problems, "\n".join(problems)
