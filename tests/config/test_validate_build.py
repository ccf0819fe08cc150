"""Validation reports every problem with path and file:line; build instantiates once."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest

from stoker.config import build, compose, load, to_typed, validate
from stoker.config.resolvers import set_art_resolver
from stoker.errors import ConfigError


def test_all_problems_together_with_file_and_line(tmp_path, w, targets_module):
    p = w(tmp_path / "r.yaml", """
        model:
          _target_: cfgtargets.Model
          dim: ???
          layrs: 3
          act: tanh
          out: 5
        optim:
          _target_: cfgtargets.Optim
          lr: fast
        data:
          _target_: cfgtargets.Nope
        loss:
          _target_: nosuchpkg.losses.CE
        ref: ${model.missing_key}
        """)
    with pytest.raises(ConfigError) as e:
        validate(load(p))
    msg = str(e.value)
    assert f"model.dim ({p}:3): missing required value" in msg
    assert f"model.layrs ({p}:4): Unknown key 'layrs' in model (cfgtargets.Model). Did you mean 'layers'?" in msg
    assert "model.act" in msg and "Literal['relu', 'gelu']" in msg
    assert f"model.out ({p}:6): expected Path, got 5" in msg
    assert f"optim.lr ({p}:9): expected float, got 'fast'" in msg
    assert "'cfgtargets' has no attribute 'Nope'" in msg
    assert "no module named 'nosuchpkg'" in msg
    assert "ref" in msg and "cannot resolve interpolation" in msg
    assert len(e.value.problems) == 8


def test_interpolation_cycle_is_reported():
    cfg = compose({"a": "${b}", "b": "${a}"})
    with pytest.raises(ConfigError, match="Recursive interpolation"):
        validate(cfg)


def test_env_resolver(monkeypatch):
    monkeypatch.setenv("STOKER_TEST_X", "42")
    cfg = compose({"x": "${oc.env:STOKER_TEST_X}", "y": "${oc.env:STOKER_TEST_UNSET,dflt}"})
    assert build(cfg) == {"x": "42", "y": "dflt"}


def test_art_resolver_fails_clearly_until_a_registry_is_set():
    cfg = compose({"data": "${art:tiny,path}"})
    previous = set_art_resolver(None)
    try:
        with pytest.raises(ConfigError, match="no registry configured"):
            validate(cfg)
        set_art_resolver(lambda name, field: f"/reg/{name}/{field}")
        assert build(cfg) == {"data": "/reg/tiny/path"}
    finally:
        set_art_resolver(previous)


def test_build_recursive_partial_and_shared_reference(targets_module):
    cfg = compose({
        "model": {"_target_": "cfgtargets.Model", "dim": 4},
        "pair": {"_target_": "cfgtargets.Pair", "a": "${model}", "b": "${model}"},
        "optim": {"_target_": "cfgtargets.Optim", "_partial_": True, "lr": 0.5},
    })
    out = build(cfg)
    assert out["pair"].a is out["pair"].b is out["model"]
    assert targets_module.CALLS.count("Model") == 1
    assert isinstance(out["optim"], functools.partial)
    assert out["optim"](params=[1]).lr == 0.5


def test_build_subtree_with_runtime_arguments(targets_module):
    cfg = compose({"optim": {"_target_": "cfgtargets.Optim", "lr": 0.5}})
    opt = build(cfg.optim, params=["p"])
    assert opt.params == ["p"] and opt.lr == 0.5


def test_schema_unknown_keys_nested_dataclass_path(tmp_path, targets_module):
    cfg = compose({"data": {"path": "data/x", "seq_len": "32"}, "steps": 5,
                   "model": {"_target_": "cfgtargets.Model", "dim": 3}})
    typed = to_typed(cfg, targets_module.TrainConfig)
    assert typed.data.path == Path("data/x") and typed.data.seq_len == 32
    assert typed.model == {"_target_": "cfgtargets.Model", "dim": 3}  # kept for a later build
    bad = compose({"data": {"pth": "x"}, "stepz": 1})
    with pytest.raises(ConfigError) as e:
        validate(bad, schema=targets_module.TrainConfig)
    msg = str(e.value)
    assert "Unknown key 'pth' in data (Data). Did you mean 'path'?" in msg
    assert "Unknown key 'stepz'. Did you mean 'steps'?" in msg
    assert "data.path" in msg and "missing required value" in msg


def test_discriminated_union_pydantic(targets_module):
    Root = targets_module.Root
    ok = to_typed(compose({"model": {"architecture": "rnn", "hidden": 8}}), Root)
    assert isinstance(ok.model, targets_module.RNN) and ok.model.hidden == 8
    with pytest.raises(ConfigError, match="'architecture' must be one of 'gpt', 'rnn', got 'cnn'"):
        validate(compose({"model": {"architecture": "cnn"}}), schema=Root)
    with pytest.raises(ConfigError, match="Unknown key 'n_layer' in model \\(GPT\\). Did you mean 'n_layers'"):
        validate(compose({"model": {"architecture": "gpt", "n_layer": 2}}), schema=Root)
