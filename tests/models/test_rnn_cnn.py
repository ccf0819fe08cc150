"""RNN and CNN forward contracts."""
from __future__ import annotations

import pytest
import torch

from stoker.errors import UserError
from stoker.models import CNNConfig, RNNConfig, build_model


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_forward_and_state(cell):
    torch.manual_seed(0)
    m = build_model(RNNConfig(cell=cell, vocab_size=20, dim=16, n_layers=2)).eval()
    x = torch.randint(0, 20, (3, 9))
    full = m(x)["logits"]
    assert full.shape == (3, 9, 20)
    state = m.new_cache(3)
    steps = [m(x[:, :4], cache=state)["logits"]]
    steps += [m(x[:, t : t + 1], cache=state)["logits"] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    # causal by construction: the prefix does not see the future
    y = x.clone()
    y[:, 5:] = 0
    torch.testing.assert_close(m(y)["logits"][:, :5], full[:, :5])


def test_rnn_tying():
    torch.manual_seed(0)
    m = build_model(RNNConfig(vocab_size=20, dim=16, tie_weights=True))
    assert m.lm_head.weight is m.tok_emb.weight


def test_cnn_forward_shapes():
    torch.manual_seed(0)
    m = build_model(CNNConfig(channels=[8, 16], hidden=32))
    assert m(torch.rand(5, 1, 8, 8))["logits"].shape == (5, 10)
    assert m(torch.rand(5, 8, 8))["logits"].shape == (5, 10)  # channel dim added
    with pytest.raises(UserError, match="image_size"):
        m(torch.rand(5, 1, 16, 16))


def test_cnn_other_sizes():
    torch.manual_seed(0)
    m = build_model(CNNConfig(image_size=28, channels=[4, 4, 4], num_classes=3))
    assert m(torch.rand(2, 1, 28, 28))["logits"].shape == (2, 3)
