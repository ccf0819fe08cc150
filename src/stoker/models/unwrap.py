"""The user's model inside the wrappers training puts around it.

``torch.compile`` returns an ``OptimizedModule`` holding the model as ``_orig_mod``; DDP
(and ``nn.DataParallel``) hold it as ``module``; the trainer may stack them (compile over
DDP). Saving weights, generating text and evaluating on one rank all want the plain module:
its state-dict names carry no ``module.``/``_orig_mod.`` prefix, and calling it runs no
collectives and triggers no recompilation. FSDP2 shards the module in place, so there is
nothing to unwrap there.
"""
from __future__ import annotations

from torch import nn

__all__ = ["unwrap_model"]

def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under any number of ``torch.compile`` and DDP-like wrappers.

    A DDP-like wrapper is a module that holds nothing but a submodule named ``module``
    (DDP, ``nn.DataParallel``, or a user's wrapper of the same shape); a model that merely
    has a layer called ``module`` among others is left whole.
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module) and _only_holds_module(model):
            inner = model.module
        if not isinstance(inner, nn.Module) or inner is model:
            return model
        model = inner


def _only_holds_module(model: nn.Module) -> bool:
    inner = getattr(model, "module", None)
    if not isinstance(inner, nn.Module):
        return False
    children = list(model.named_children())
    own = [*model.parameters(recurse=False), *model.buffers(recurse=False)]
    return children == [("module", inner)] and not own
