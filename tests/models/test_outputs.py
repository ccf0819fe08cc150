"""A forward's output as the step's preds, and the generation contract of a user's LM."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stoker.errors import ConfigError, UserError
from stoker.infer.generate import check_lm_contract, generate
from stoker.models.outputs import as_preds


def test_dict_tensor_and_named_tuple() -> None:
    t = torch.zeros(2, 3)
    assert as_preds({"a": t}) == {"a": t}
    assert as_preds(t)["logits"] is t
    named = as_preds((t, t + 1), ["logits", "aux"])
    assert named["logits"] is t and torch.equal(named["aux"], t + 1)


def test_an_unnamed_tuple_says_what_was_returned() -> None:
    with pytest.raises(ConfigError) as e:
        as_preds((torch.zeros(2, 3), torch.zeros(2)))
    assert "a tuple of 2 (a tensor of shape [2, 3], a tensor of shape [2])" in str(e.value)
    assert "model_outputs: [out0, out1]" in str(e.value)
    with pytest.raises(ConfigError, match="names 3 outputs"):
        as_preds((torch.zeros(1), torch.zeros(1)), ["a", "b", "c"])


class TensorLM(nn.Module):
    """A user LM that returns a bare logits tensor: generation works with it."""

    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, vocab)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.emb(input_ids)


class Pooled(TensorLM):
    """Returns one row of logits per sequence: not the contract."""

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.emb(input_ids).mean(1)


def test_generation_contract() -> None:
    torch.manual_seed(0)
    lm = TensorLM()
    check_lm_contract(lm, vocab_size=11)
    out = generate(lm, torch.tensor([[1, 2]]), 5, temperature=0)
    assert out.shape == (1, 7)
    with pytest.raises(UserError) as e:
        check_lm_contract(Pooled())
    assert "returned a tensor of shape [1, 11], not logits [1, 2, vocab_size]" in str(e.value)
