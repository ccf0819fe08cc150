"""generate(): cached vs uncached equality, sampling controls, eos, RNN, sample_text."""
from __future__ import annotations

import pytest
import torch

from stoker.errors import UserError
from stoker.infer.generate import generate, sample_next, sample_text
from stoker.models import GPTConfig, RNNConfig, build_model


def gpt(**kw):
    torch.manual_seed(0)
    base = dict(vocab_size=40, n_layers=2, dim=32, n_heads=4, max_seq_len=24)
    base.update(kw)
    return build_model(GPTConfig(**base))


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_cached_and_uncached_greedy_are_identical(n_kv_heads):
    model = gpt(n_kv_heads=n_kv_heads)
    x = torch.randint(0, 40, (2, 5))
    a = generate(model, x, 15, temperature=0, use_cache=True)
    b = generate(model, x, 15, temperature=0, use_cache=False)
    assert a.shape == (2, 20)
    assert torch.equal(a[:, :5], x)
    assert torch.equal(a, b)


def test_generation_past_the_context_crops_identically():
    model = gpt(max_seq_len=8)
    x = torch.randint(0, 40, (1, 3))
    a = generate(model, x, 20, temperature=0, use_cache=True)
    b = generate(model, x, 20, temperature=0, use_cache=False)
    assert a.shape == (1, 23) and torch.equal(a, b)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_cached_and_uncached_agree(cell):
    torch.manual_seed(0)
    model = build_model(RNNConfig(cell=cell, vocab_size=30, dim=16, n_layers=2))
    x = torch.randint(0, 30, (2, 4))
    a = generate(model, x, 12, temperature=0, use_cache=True)
    b = generate(model, x, 12, temperature=0, use_cache=False)
    assert torch.equal(a, b)


def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone():
    model = gpt()
    x = torch.randint(0, 40, (1, 3))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = generate(model, x, 10, temperature=1.0, top_k=10, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = generate(model, x, 10, temperature=1.0, top_k=10, seed=7, use_cache=False)
    c = generate(model, x, 10, temperature=1.0, top_k=10, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_top_k_one_and_tiny_top_p_are_greedy():
    model = gpt()
    x = torch.randint(0, 40, (1, 3))
    greedy = generate(model, x, 8, temperature=0)
    assert torch.equal(generate(model, x, 8, temperature=1.5, top_k=1, seed=0), greedy)
    assert torch.equal(generate(model, x, 8, temperature=1.5, top_p=1e-6, seed=0), greedy)


def test_sample_next_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits, top_p=0.8, generator=g)) for _ in range(200)}
    assert picks == {0, 1}


def test_eos_stops_rows_and_pads():
    model = gpt()
    x = torch.randint(0, 40, (2, 3))
    free = generate(model, x, 10, temperature=0)
    eos = int(free[0, 5])  # the token row 0 emits third
    out = generate(model, x, 10, temperature=0, eos_id=eos)
    row0 = out[0, 3:].tolist()
    assert eos in row0
    first = row0.index(eos)
    assert all(t == eos for t in row0[first:])


def test_restores_training_mode_and_accepts_1d():
    model = gpt().train()
    out = generate(model, torch.tensor([1, 2, 3]), 4, temperature=0)
    assert out.shape == (7,) and model.training


def test_bad_arguments():
    model = gpt()
    x = torch.zeros(1, 2, dtype=torch.long)
    for kw in (dict(temperature=-1), dict(top_k=0), dict(top_p=1.5)):
        with pytest.raises(UserError):
            generate(model, x, 3, **kw)
    with pytest.raises(UserError):
        generate(model, x, -1)


class CharTok:
    eos_id = None

    def __init__(self, alphabet):
        self.alphabet = alphabet

    def encode(self, s):
        return [self.alphabet.index(c) for c in s]

    def decode(self, ids):
        return "".join(self.alphabet[i] for i in ids)


def test_sample_text_round_trip():
    tok = CharTok("abcdefghijklmnopqrstuvwxyz ()=:.,'\n\t_-+*")
    model = gpt(vocab_size=len(tok.alphabet))
    text = sample_text(model, tok, "def f", 12, temperature=0)
    assert text.startswith("def f") and len(text) == 17
    again = sample_text(model, tok, "def f", 12, seed=3)
    assert sample_text(model, tok, "def f", 12, seed=3) == again


def test_wrapped_models_generate_through_the_plain_module():
    class Wrapper(torch.nn.Module):  # shaped like DistributedDataParallel
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            raise AssertionError("generation must not go through the wrapper")

    model = gpt()
    x = torch.randint(0, 40, (1, 4))
    assert torch.equal(generate(Wrapper(model), x, 6, temperature=0),
                       generate(model, x, 6, temperature=0))
