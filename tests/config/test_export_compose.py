"""Export round trips, Hydra defaults lists, Python recipes, konfig and references."""
from __future__ import annotations

import os
import sys

import pytest

from stoker.config import compose, load, save
from stoker.config.export import to_container
from stoker.errors import ConfigError

TREE = {
    "seed": 1, "none": None, "flag": True, "ratio": 0.5, "name": "x",
    "list": [1, "a", None], "missing": "???",
    "optim": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
    "sched": {"steps": "${seed}", "env": "${oc.env:HOME,/tmp}", "art": "${art:data,path}"},
    "nested": [{"a": 1}, {"b": "${name}"}],
}


@pytest.mark.parametrize("ext", ["yaml", "toml", "json"])
def test_round_trip_every_format(tmp_path, ext):
    cfg = compose(TREE)
    p = save(cfg, tmp_path / f"c.{ext}")
    back = load(p)
    assert to_container(back, resolve=False) == to_container(cfg, resolve=False)
    # and across formats
    again = load(save(back, tmp_path / "d.yaml"))
    assert to_container(again, resolve=False) == TREE


def test_hydra_defaults_list_without_leaking_state(tmp_path, w):
    w(tmp_path / "conf" / "config.yaml", """
        defaults:
          - model: small
          - _self_
        seed: 3
        """)
    w(tmp_path / "conf" / "model" / "small.yaml", "dim: 8\nlayers: 2\n")
    w(tmp_path / "conf" / "model" / "big.yaml", "dim: 256\nlayers: 12\n")
    cwd = os.getcwd()
    cfg = compose(tmp_path / "conf", ["model=big", "model.layers=4", "seed=5"])
    assert to_container(cfg) == {"model": {"dim": 256, "layers": 4}, "seed": 5}
    assert os.getcwd() == cwd
    from hydra.core.global_hydra import GlobalHydra

    assert not GlobalHydra.instance().is_initialized()
    cfg2 = compose(tmp_path / "conf" / "config.yaml")  # the file itself works too
    assert cfg2.model.dim == 8
    with pytest.raises(ConfigError, match="huge"):
        compose(tmp_path / "conf", ["model=huge"])


def test_python_recipes_and_konfig_refs_survive_export(tmp_path, w):
    w(tmp_path / "exp.py", """
        from stoker import konfig

        with konfig.imports():
            import torch

        def get_config():
            cfg = konfig.ConfigDict()
            cfg.steps = 100
            cfg.sched = torch.optim.lr_scheduler.StepLR.partial(step_size=cfg.ref.steps)
            return cfg

        def other():
            return {"a": 1}
        """)
    torch_loaded = "torch" in sys.modules
    cfg = compose(tmp_path / "exp.py", ["steps=7"])
    assert ("torch" in sys.modules) == torch_loaded  # konfig did not import torch
    assert to_container(cfg, resolve=False)["sched"] == {
        "_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": "${steps}"}
    back = load(save(cfg, tmp_path / "e.toml"))
    assert to_container(back, resolve=True)["sched"]["step_size"] == 7
    assert compose(f"{tmp_path}/exp.py:other").a == 1
    with pytest.raises(ConfigError, match="has no function othr. Did you mean 'other'"):
        compose(f"{tmp_path}/exp.py:othr")


def test_module_function_recipe_and_builtin_recipe():
    cfg = compose("stoker.config.recipes:list_recipes" if False else "example-linear", ["dim=3"])
    assert cfg.model.in_features == 3
    from stoker.config.recipes import find_recipe, list_recipes

    assert any(r.name == "example-linear" and r.description for r in list_recipes())
    with pytest.raises(ConfigError, match="Known recipes"):
        find_recipe("no-such-recipe")
