"""GPT: shapes, causality, GQA, tying, determinism, cache equivalence, config errors."""
from __future__ import annotations

import pytest
import torch

from stoker.errors import ConfigError, UserError
from stoker.models import GPTConfig, build_model, count_parameters


def _repeat_kv(t, kv_heads: int, head_dim: int, heads: int):
    """Grouped key/value rows repeated to one per query head (an MHA's layout)."""
    return t.view(kv_heads, head_dim, -1).repeat_interleave(heads // kv_heads, 0) \
        .reshape(heads * head_dim, -1)


def tiny(**kw):
    base = dict(vocab_size=50, n_layers=2, dim=32, n_heads=4, max_seq_len=32)
    base.update(kw)
    return GPTConfig(**base)


def make(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny(**kw))


def test_forward_shapes_and_dict_contract():
    model = make()
    out = model(torch.randint(0, 50, (3, 10)))
    assert set(out) == {"logits"}
    assert out["logits"].shape == (3, 10, 50)


def test_future_tokens_do_not_change_past_logits():
    model = make().eval()
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, 9:] = torch.randint(0, 50, (2, 7))
    a, b = model(x)["logits"], model(y)["logits"]
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_gqa_has_fewer_kv_parameters_and_runs():
    full = make(n_kv_heads=4)
    gqa = make(n_kv_heads=1)
    assert count_parameters(gqa) < count_parameters(full)
    assert gqa.layers[0].attn.wqkv.weight.shape[0] == (4 + 2 * 1) * 8
    out = gqa(torch.randint(0, 50, (2, 12)))["logits"]
    assert out.shape == (2, 12, 50) and torch.isfinite(out).all()


def test_gqa_equals_mha_with_repeated_kv_heads():
    """A GQA model behaves like MHA whose key/value heads are copies within each group."""
    gqa = make(n_kv_heads=2).eval()
    mha = make(n_kv_heads=4).eval()
    sd = gqa.state_dict()
    hd, H, K = 8, 4, 2
    for i in range(2):
        w = sd[f"layers.{i}.attn.wqkv.weight"]
        q, k, v = w.split([H * hd, K * hd, K * hd])
        sd[f"layers.{i}.attn.wqkv.weight"] = torch.cat(
            [q, _repeat_kv(k, K, hd, H), _repeat_kv(v, K, hd, H)])
    mha.load_state_dict(sd)
    x = torch.randint(0, 50, (2, 10))
    torch.testing.assert_close(gqa(x)["logits"], mha(x)["logits"], rtol=1e-5, atol=1e-5)


def test_weight_tying_shares_one_tensor():
    tied, untied = make(tie_weights=True), make(tie_weights=False)
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.lm_head.weight is not untied.tok_emb.weight
    assert count_parameters(untied) - count_parameters(tied) == 50 * 32
    # state dict round trip keeps the tie
    fresh = make(seed=1, tie_weights=True)
    fresh.load_state_dict(tied.state_dict())
    assert fresh.lm_head.weight is fresh.tok_emb.weight


def test_init_is_deterministic_under_a_seed():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)
    # residual projections get the scaled-down std
    assert a.layers[0].attn.wo.weight.std() < a.layers[0].attn.wqkv.weight.std()


def test_kv_cache_prefill_then_steps_matches_full_forward():
    model = make().eval()
    x = torch.randint(0, 50, (2, 20))
    full = model(x)["logits"]
    cache = model.new_cache(2)
    parts = [model(x[:, :7], cache=cache)["logits"]]
    parts.append(model(x[:, 7:12], cache=cache)["logits"])  # multi-token chunk after prefix
    for t in range(12, 20):
        parts.append(model(x[:, t : t + 1], cache=cache)["logits"])
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)
    assert cache.pos == 20


def test_too_long_input_is_a_clear_error():
    model = make()
    with pytest.raises(UserError, match="max_seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_backward_reaches_every_parameter():
    model = make(tie_weights=False)
    logits = model(torch.randint(0, 50, (2, 8)))["logits"]
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bf16_autocast_runs():
    model = make()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randint(0, 50, (1, 8)))["logits"]
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(dim=30, n_heads=4), "divisible by n_heads"),
        (dict(n_kv_heads=3), "must divide n_heads"),
        (dict(dim=12, n_heads=4), "even head size"),
    ],
)
def test_bad_shapes_are_rejected_with_reason(kw, match):
    with pytest.raises(Exception, match=match):
        tiny(**kw)


def test_unknown_key_and_missing_vocab_are_config_errors():
    with pytest.raises(ConfigError) as e:
        build_model({"architecture": "gpt", "n_layer": 2, "vocab_size": 10})
    assert "model.n_layer" in str(e.value) and "unknown key" in str(e.value)
    with pytest.raises(UserError, match="vocab_size"):
        build_model({"architecture": "gpt"})
    m = build_model({"architecture": "gpt", "dim": 32, "n_heads": 4, "n_layers": 1},
                    vocab_size=11)
    assert m.config.vocab_size == 11


def test_last_only_gives_the_last_positions_logits():
    model = make().eval()
    x = torch.randint(0, 50, (2, 9))
    full = model(x)["logits"]
    last = model(x, last_only=True)["logits"]
    assert last.shape == (2, 1, 50)
    torch.testing.assert_close(last, full[:, -1:])
