"""Your own code in `stoker train`, through the real CLI: Craft's add-an-architecture
workflow (a config class with an `architecture` Literal, a YAML in `conf/model/`,
`model=my_new_model`, `imports:`), `_target_` models and datasets, iterable datasets and
their resume contract, plugins, and the messages for bad input (exit 2, nothing written)."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from train_helpers import read_metrics, run_cli, train_losses

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "my_project"

MODELS = '''
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from stoker.models import register_model


class MyNewModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    architecture: Literal["my_new_model"] = "my_new_model"
    vocab_size: int | None = None
    dim: int = 16


class MyNewModel(nn.Module):
    def __init__(self, config: MyNewModelConfig) -> None:
        super().__init__()
        self.emb = nn.Embedding(config.vocab_size, config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size)

    def forward(self, input_ids):
        return {"logits": self.head(self.emb(input_ids))}


class NoLogits(nn.Module):
    def __init__(self, vocab_size: int = 0, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab_size, dim)

    def forward(self, input_ids):
        return {"hidden": self.emb(input_ids)}


register_model("my_new_model", MyNewModelConfig, MyNewModel)
'''

STREAMS = '''
import torch
from torch.utils.data import IterableDataset


class Stream(IterableDataset):
    """x -> y = 2x + 1, forever in the same order (no resume contract)."""

    def __init__(self, n: int = 64) -> None:
        self.n = n
        self.position = 0

    def item(self, i):
        x = torch.tensor([float(i % 13) / 13.0])
        return {"x": x, "y": 2 * x + 1}

    def __iter__(self):
        for i in range(self.n):
            yield self.item(i)


class ResumableStream(Stream):
    """The same stream with the resume contract: state_dict() is the position of the
    current pass; load_state_dict() makes the next iter() start there."""

    def __iter__(self):
        start, self.position = self.position, 0
        for i in range(start, self.n):
            self.position = i + 1
            yield self.item(i)
        self.position = 0

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = int(state["position"])
'''

CONFIG = '''
defaults:
  - _self_
  - model: gpt_tiny
imports: [craft_demo.models]
name: craft
seed: 0
data: {type: tokens, path: builtin:char, seq_len: 16, batch_size: 4}
model_inputs: {input_ids: batch.input_ids}
losses:
  ce: {_target_: stoker.train.losses.CrossEntropy, logits: preds.logits, labels: batch.labels}
trainer: {max_steps: 4, eval_every: 4, eval_batches: 2, log_every: 1, num_threads: 1}
checkpoint: {every_steps: 2}
loggers: [jsonl]
register_artifact: false
'''

STREAM_CONFIG = '''
imports: [craft_demo.streams]
name: stream
seed: 0
model: {_target_: torch.nn.Linear, in_features: 1, out_features: 1}
data: {_target_: craft_demo.streams.ResumableStream, n: 40, eval: null, batch_size: 4}
model_inputs: {input: batch.x}
losses:
  mse: {_target_: stoker.train.losses.MSE, preds: preds.logits, targets: batch.y}
optim: {_target_: torch.optim.SGD, _partial_: true, lr: 0.1}
trainer: {max_steps: 16, log_every: 1, num_threads: 1}
checkpoint: {every_steps: 4}
loggers: [jsonl]
register_artifact: false
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: a package with a model and datasets, configs in conf/."""
    root = tmp_path_factory.mktemp("proj")
    pkg = root / "craft_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODELS)
    (pkg / "streams.py").write_text(STREAMS)
    (pkg / "boom.py").write_text("x = 1\nraise RuntimeError('boom at import')\n")
    (pkg / "badcfg.py").write_text(textwrap.dedent('''
        from pydantic import BaseModel
        from stoker.models import register_model

        class BadConfig(BaseModel):
            architecture: str = "bad"
            dim: int = 4

        register_model("bad", BadConfig, "craft_demo.models:MyNewModel")
    '''))
    conf = root / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "config.yaml").write_text(CONFIG)
    (conf / "stream.yaml").write_text(STREAM_CONFIG)
    (conf / "model" / "gpt_tiny.yaml").write_text(
        "architecture: gpt\nn_layers: 1\ndim: 16\nn_heads: 2\nmax_seq_len: 16\n")
    (conf / "model" / "my_new_model.yaml").write_text("architecture: my_new_model\ndim: 16\n")
    (conf / "model" / "no_logits.yaml").write_text("_target_: craft_demo.models.NoLogits\ndim: 8\n")
    return root


def _bad(stoker_cmd, cwd: Path, out: Path, *args: str, env=None) -> str:
    """Run a command that must fail on bad input: exit 2, no traceback, nothing written."""
    proc = run_cli(stoker_cmd, *args, f"output_dir={out}", "--yes", cwd=cwd, env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    assert not out.exists(), f"{out} was written"
    return text


def test_craft_workflow_trains_evaluates_and_generates(stoker_cmd, project: Path,
                                                       tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_cli(stoker_cmd, "train", "conf/config.yaml", "model=my_new_model",
            f"data.path={tiny_data}", f"output_dir={out}", "--yes", cwd=project, check=True)
    cfg = (out / "config.yaml").read_text()
    assert "architecture: my_new_model" in cfg and "craft_demo.models" in cfg
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3, 4]
    ev = run_cli(stoker_cmd, "eval", str(out), cwd=project, check=True)
    assert "split: valid" in ev.stdout and "eval/loss:" in ev.stdout
    gen = run_cli(stoker_cmd, "generate", "text", "--checkpoint", str(out), "-p", "def ",
                  "-n", "8", cwd=project, check=True)
    assert gen.stdout.startswith("def ") and len(gen.stdout.strip()) > len("def")
    # an archive of your own model: its modules run only when trusted, then it generates
    archive = tmp_path / "mine.stoker"
    run_cli(stoker_cmd, "pack", "--checkpoint", str(out), "--output", str(archive),
            cwd=project, check=True)
    refused = run_cli(stoker_cmd, "generate", "text", "-c", str(archive), "-p", "def ",
                      "-n", "8", cwd=project)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "imports[0] = craft_demo.models" in refused.stderr, refused.stderr
    assert "--trust craft_demo" in refused.stderr
    packed = run_cli(stoker_cmd, "generate", "text", "-c", str(archive), "-p", "def ", "-n",
                     "8", "--temperature", "0", "--trust", "craft_demo", cwd=project,
                     check=True)
    greedy = run_cli(stoker_cmd, "generate", "text", "-c", str(out), "-p", "def ", "-n", "8",
                     "--temperature", "0", cwd=project, check=True)
    assert packed.stdout == greedy.stdout  # the same weights, restored from the archive
    hf = run_cli(stoker_cmd, "export", "hf", "-c", str(archive), "--output",
                 str(tmp_path / "hf"), "--trust", "craft_demo", cwd=project)
    assert hf.returncode == 2 and "supports: gpt" in hf.stderr, hf.stderr
    assert not (tmp_path / "hf").exists()


def test_import_option_loads_a_module_the_config_does_not_name(stoker_cmd, project: Path,
                                                               tiny_data: Path,
                                                               tmp_path: Path) -> None:
    text = _bad(stoker_cmd, project, tmp_path / "a", "train", "conf/config.yaml", "imports=[]",
                "model=my_new_model", f"data.path={tiny_data}")
    assert "'my_new_model'" in text and "modules imported for this config: none" in text
    assert "'gpt', 'rnn', 'cnn'" in text
    ok = run_cli(stoker_cmd, "train", "conf/config.yaml", "imports=[]", "model=my_new_model",
                 f"data.path={tiny_data}", f"output_dir={tmp_path / 'b'}", "--import",
                 "craft_demo.models", "--dryrun", cwd=project)
    assert ok.returncode == 0, ok.stderr


def test_bad_imports_name_the_module_and_why(stoker_cmd, project: Path, tiny_data: Path,
                                             tmp_path: Path) -> None:
    text = _bad(stoker_cmd, project, tmp_path / "a", "train", "conf/config.yaml",
                "imports=[craft_demo.models,craft_demo.nope]", f"data.path={tiny_data}")
    assert "imports[1]" in text and "cannot import module 'craft_demo.nope'" in text
    assert "no module named 'craft_demo.nope'" in text
    text = _bad(stoker_cmd, project, tmp_path / "b", "train", "conf/config.yaml",
                "imports=[craft_demo.boom]", f"data.path={tiny_data}")
    assert "importing module 'craft_demo.boom' raised RuntimeError" in text
    assert "boom.py:2" in text and "boom at import" in text
    text = _bad(stoker_cmd, project, tmp_path / "c", "train", "conf/config.yaml",
                "imports=[craft_demo.badcfg]", f"data.path={tiny_data}")
    assert "BadConfig has architecture: str = 'bad'" in text
    assert "Literal['bad']" in text


def test_unknown_architecture_lists_registered_and_imported(stoker_cmd, project: Path,
                                                            tiny_data: Path,
                                                            tmp_path: Path) -> None:
    text = _bad(stoker_cmd, project, tmp_path / "a", "train", "conf/config.yaml",
                "model=my_new_model", "model.architecture=my_newer_model",
                f"data.path={tiny_data}")
    assert "'my_new_model'" in text and "got 'my_newer_model'" in text
    assert "modules imported for this config: craft_demo.models" in text


def test_target_model_without_the_output_a_loss_needs(stoker_cmd, project: Path,
                                                      tiny_data: Path, tmp_path: Path) -> None:
    text = _bad(stoker_cmd, project, tmp_path / "a", "train", "conf/config.yaml",
                "model=no_logits", f"data.path={tiny_data}")
    assert "losses.ce.logits" in text and "'preds.logits' does not exist" in text
    assert "NoLogits.forward returned a dict {'hidden': a tensor of shape [1, 16, 8]}" in text


def test_dataset_item_missing_a_key(stoker_cmd, tmp_path: Path) -> None:
    text = _bad(stoker_cmd, EXAMPLE, tmp_path / "a", "train", "conf/config.yaml",
                "losses.ce.labels=batch.target")
    assert "losses.ce.labels" in text and "'batch.target' does not exist" in text
    assert "batch.features" in text and "batch.label" in text
    text = _bad(stoker_cmd, EXAMPLE, tmp_path / "b", "train", "conf/config.yaml",
                "model_inputs.features=batch.x")
    assert "model_inputs.features" in text and "batch.features, batch.label" in text


def test_iterable_dataset_resumes_exactly_through_its_contract(stoker_cmd, project: Path,
                                                               tmp_path: Path) -> None:
    ref, out = tmp_path / "ref", tmp_path / "run"
    run_cli(stoker_cmd, "train", "conf/stream.yaml", f"output_dir={ref}", "--yes",
            cwd=project, check=True)
    run_cli(stoker_cmd, "train", "conf/stream.yaml", f"output_dir={out}",
            "trainer.stop_after_steps=6", "--yes", cwd=project, check=True)
    run_cli(stoker_cmd, "train", "conf/stream.yaml", f"output_dir={out}", "--yes",
            cwd=project, check=True)
    assert list(train_losses(ref)) == list(range(1, 17))  # 16 steps over 10-batch passes
    assert train_losses(out) == train_losses(ref)


def test_iterable_dataset_without_contract_is_refused_when_resume_is_on(
        stoker_cmd, project: Path, tmp_path: Path) -> None:
    text = _bad(stoker_cmd, project, tmp_path / "a", "train", "conf/stream.yaml",
                "data._target_=craft_demo.streams.Stream")
    assert "Stream is an iterable dataset without state_dict()/load_state_dict()" in text
    assert "resume=never" in text
    run_cli(stoker_cmd, "train", "conf/stream.yaml", "data._target_=craft_demo.streams.Stream",
            "resume=never", f"output_dir={tmp_path / 'b'}", "--yes", cwd=project, check=True)


def test_plugin_entry_point_registers_an_installed_package(stoker_cmd, tmp_path: Path) -> None:
    """An installed package (a dist-info with a `stoker.plugins` entry point) registers its
    architecture without `imports:`; a broken plugin is named, and `stoker --help` never
    loads plugins."""
    site = tmp_path / "site"
    dist = site / "my_project-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-project\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[stoker.plugins]\nmy_project = my_project.models\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site), str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ["train", str(EXAMPLE / "conf" / "config.yaml"), "imports=[]",
            f"data.path={EXAMPLE / 'data' / 'penguins.csv'}"]
    ok = run_cli(stoker_cmd, *args, f"output_dir={tmp_path / 'a'}", "--dryrun", cwd=elsewhere,
                 env=env)
    assert ok.returncode == 0, ok.stderr
    (dist / "entry_points.txt").write_text("[stoker.plugins]\nbroken = craft_missing.mod\n")
    text = _bad(stoker_cmd, elsewhere, tmp_path / "b", *args, env=env)
    assert "entry point 'broken = craft_missing.mod' (stoker.plugins, package my-project)" in text
    assert "ModuleNotFoundError" in text
    helped = run_cli(stoker_cmd, "--help", env=env)
    assert helped.returncode == 0
