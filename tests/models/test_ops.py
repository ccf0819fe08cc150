"""The fused GPT blocks equal their textbook formulas (values and gradients)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from stoker.models.ops import apply_rope, rms_norm, rope_table, swiglu


def test_rms_norm_matches_formula_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(16, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b: rms_norm(a, b, 1e-5), (x, w))
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(rms_norm(x, w, 1e-5), ref)


def test_swiglu_matches_formula_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(2, 4, 12, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: swiglu(t, 6), (h,))
    torch.testing.assert_close(swiglu(h, 6), F.silu(h[..., :6]) * h[..., 6:])


def test_rope_is_a_rotation_of_interleaved_pairs():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 8, dtype=torch.float64)
    table = rope_table(8, 7, 10000.0)
    y = apply_rope(x.float(), table).double()
    # position 0 is the identity, norms are kept, and the pair formula holds
    torch.testing.assert_close(y[:, 0], x[:, 0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    ang = torch.outer(torch.arange(7.0, dtype=torch.float64),
                      1.0 / 10000.0 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8))
    c, s = ang.cos()[None, :, None], ang.sin()[None, :, None]
    a, b = x[..., 0::2], x[..., 1::2]
    torch.testing.assert_close(y[..., 0::2], a * c - b * s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[..., 1::2], a * s + b * c, rtol=1e-5, atol=1e-5)


def test_in_place_rope_split_matches_the_copying_path_and_gradients():
    from stoker.models.ops import apply_rope, rope_split_heads

    torch.manual_seed(0)
    B, T, n_q, n_kv, hd = 2, 5, 4, 2, 8
    heads = n_q + 2 * n_kv
    table = rope_table(hd, T, 10000.0).double()
    base = torch.randn(B, T, heads * hd, dtype=torch.float64)
    v = base.view(B, T, heads, hd)
    want = [apply_rope(v[:, :, :n_q], table), apply_rope(v[:, :, n_q:n_q + n_kv], table),
            v[:, :, n_q + n_kv:]]
    got = rope_split_heads(base.clone(), table, n_q, n_kv, hd)  # in place
    view = base.view(B, T, heads, hd).view(B, T, -1)  # a view: the copying path
    copy = rope_split_heads(view, table, n_q, n_kv, hd)
    torch.testing.assert_close(view, base)  # left untouched
    for g, c, w in zip(got, copy, want):
        assert g.shape == (B, w.shape[2], T, hd)
        torch.testing.assert_close(g, w.transpose(1, 2))
        torch.testing.assert_close(c, w.transpose(1, 2))

    # gradients through the in-place path, with a consumer reading every output
    w = torch.randn(heads * hd, heads * hd, dtype=torch.float64, requires_grad=True)
    inp = torch.randn(B, T, heads * hd, dtype=torch.float64)

    def fused(w):
        return torch.cat([t.flatten(1) for t in rope_split_heads(inp @ w, table, n_q, n_kv, hd)], 1)

    torch.autograd.gradcheck(fused, (w,))


def test_the_formulas_used_under_torch_compile_match_the_eager_kernels(monkeypatch):
    """Under torch.compile the ops switch to plain math inductor can fuse; same values and
    gradients as the hand-written eager kernels (checked here without compiling)."""
    from stoker.models import GPTConfig, build_model

    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=11, n_layers=2, dim=16, n_heads=4, n_kv_heads=2,
                                  max_seq_len=8)).double()
    x = torch.randint(0, 11, (3, 8))

    def run():
        model.zero_grad()
        logits = model(x)["logits"]
        logits.square().mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    eager = run()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    plain = run()
    torch.testing.assert_close(plain[0], eager[0])
    for a, b in zip(plain[1], eager[1]):
        torch.testing.assert_close(a, b)
