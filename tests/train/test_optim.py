"""The optimizer the trainer builds from a recipe's `optim` node."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stoker.train.optim import build_optimizer


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


@pytest.mark.parametrize("target", ["torch.optim.AdamW", "torch.optim.Adam", "torch.optim.SGD",
                                    "torch.optim.Adagrad"])
def test_fused_step_is_picked_when_the_optimizer_has_one(target):
    opt = build_optimizer({"_target_": target, "lr": 0.1}, _model())
    assert opt.defaults["fused"] is True
    before = [p.detach().clone() for g in opt.param_groups for p in g["params"]]
    for g in opt.param_groups:
        for p in g["params"]:
            p.grad = torch.ones_like(p)
    opt.step()  # the fused kernel exists on this device and runs
    after = [p for g in opt.param_groups for p in g["params"]]
    assert all(not torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("choice", [{"fused": False}, {"foreach": True}, {"foreach": False}])
def test_the_recipe_choice_wins(choice):
    opt = build_optimizer({"_target_": "torch.optim.AdamW", "lr": 0.1, **choice}, _model())
    assert not opt.defaults["fused"]
    for key, value in choice.items():
        assert opt.defaults[key] is value


def test_optimizers_without_a_fused_step_are_built_as_written():
    opt = build_optimizer({"_target_": "torch.optim.RMSprop", "lr": 0.1}, _model())
    assert "fused" not in opt.defaults


def test_fused_and_for_each_steps_agree():
    torch.manual_seed(0)
    a = _model()
    b = _model()
    b.load_state_dict(a.state_dict())
    node = {"_target_": "torch.optim.AdamW", "lr": 0.01, "weight_decay": 0.1}
    fused = build_optimizer(node, a)
    foreach = build_optimizer({**node, "foreach": True}, b)
    for _ in range(3):
        for m in (a, b):
            m.zero_grad()
            m(torch.ones(3, 4)).square().sum().backward()
        fused.step()
        foreach.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_weight_decay_applies_to_matrices_only():
    opt = build_optimizer({"_target_": "torch.optim.AdamW", "lr": 0.1, "weight_decay": 0.1},
                          _model())
    decayed, plain = opt.param_groups
    assert all(p.dim() >= 2 for p in decayed["params"]) and decayed["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in plain["params"]) and plain["weight_decay"] == 0.0
