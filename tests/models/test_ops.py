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


def test_in_place_fused_rope_matches_the_copying_path_and_gradients():
    from stoker.models.ops import apply_rope, rope_qkv

    torch.manual_seed(0)
    B, T, heads, hd, n_rot = 2, 5, 4, 8, 3
    table = rope_table(hd, T, 10000.0).double()
    base = torch.randn(B, T, heads * hd, dtype=torch.float64)
    x = base.clone()
    got = rope_qkv(x, table, n_rot, hd)
    v = base.view(B, T, heads, hd)
    want = torch.cat([apply_rope(v[:, :, :n_rot], table), v[:, :, n_rot:]], dim=2)
    torch.testing.assert_close(got, want)

    w = torch.randn(heads * hd, heads * hd, dtype=torch.float64, requires_grad=True)
    inp = torch.randn(B, T, heads * hd, dtype=torch.float64)
    torch.autograd.gradcheck(lambda w: rope_qkv(inp @ w, table, n_rot, hd), (w,))
