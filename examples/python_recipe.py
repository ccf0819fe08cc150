"""A Python-first recipe: `konfig.imports()` turns calls into config nodes, `cfg.ref` into ${...}.

    stoker config show examples/python_recipe.py:get_config steps=50
    stoker config show examples/python_recipe.py:get_config --to-yaml recipe.yaml   # then: stoker config show recipe.yaml
"""
from __future__ import annotations

from stoker import konfig

with konfig.imports():
    import torch


def get_config():
    cfg = konfig.ConfigDict()
    cfg.steps = 100
    cfg.dim = 16
    cfg.model = torch.nn.Linear(in_features=cfg.ref.dim, out_features=2)        # ${dim}
    cfg.optim = torch.optim.AdamW.partial(lr=1e-3)                              # _partial_: true
    cfg.sched = torch.optim.lr_scheduler.StepLR.partial(step_size=cfg.ref.steps)  # ${steps}
    return cfg
