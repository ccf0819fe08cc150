"""Small fused building blocks for the GPT, written for eager speed on CPU.

In eager mode every elementwise op is a full pass over memory (and, with several threads
on a busy machine, a synchronisation point), so these blocks keep the pass count low:

- :func:`rms_norm`: backward through LayerNorm's fused kernel (mean 0, rstd = RMS scale)
  plus a one-pass correction; autograd's composite ``F.rms_norm`` runs about ten ops.
- :func:`swiglu`: ``silu(gate) * up`` on the fused ``[gate | up]`` projection; the backward
  writes both halves of the gradient in place instead of concatenating them.
- :func:`rope_qkv` / :func:`apply_rope`: rotary embedding as one complex multiply over
  interleaved pairs (the Meta Llama layout; :mod:`stoker.models.hf` permutes rows for
  Hugging Face's rotate-half layout), in place on the fused q/k/v projection. About 3x
  cheaper than the roll/cat formulations.

On CPU a fresh large buffer costs page faults on first touch, which in eager mode can
cost more than the arithmetic; hence the in-place updates and reused temporaries.

All three match their textbook formulas to float rounding (tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RMSNorm", "apply_rope", "rms_norm", "rope_qkv", "rope_table", "swiglu"]


class _RMSNormFn(torch.autograd.Function):
    """Saves the input and the per-row scale only; one allocation forward, and backward is
    LayerNorm's fused kernel plus a one-pass correction (3 ops instead of about 10)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        d = x.shape[-1]
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(d).add_(eps)
        r = r.rsqrt_()
        ctx.save_for_backward(x, weight, r)
        return torch.mul(x, r).mul_(weight)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        # y = x * r * w with r = rsqrt(mean(x^2) + eps). LayerNorm's fused backward kernel,
        # given mean 0 and rstd r, returns dw exactly and
        #   dx_ln = r * (g*w - mean(g*w) - x*r * mean(g*w * x*r)),
        # so dx = dx_ln + r * mean(g*w), and mean(g*w) per row is one matrix-vector product.
        x, weight, r = ctx.saved_tensors
        d = x.shape[-1]
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx, dw, _ = torch.ops.aten.native_layer_norm_backward(
            g, x, [d], torch.zeros_like(r), r, weight, None, [need_x, need_w, False]
        )
        if need_x:
            m = torch.mv(g.reshape(-1, d), weight).view(r.shape).div_(d)
            gx = gx.addcmul_(r, m)
        return gx, dw, None


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension."""
    if x.dtype != weight.dtype:  # mixed precision: compute in the wider of the two
        dtype = torch.promote_types(x.dtype, weight.dtype)
        x, weight = x.to(dtype), weight.to(dtype)
    return _RMSNormFn.apply(x, weight, eps)


class RMSNorm(nn.Module):
    """Root-mean-square norm (no mean subtraction, no bias), as in Llama."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


class _SwiGLUFn(torch.autograd.Function):
    """Saves only the projection ``h`` and recomputes ``silu(gate)`` in backward: one
    allocation forward, and the gradient halves are written in place (no concatenation)."""

    @staticmethod
    def forward(ctx, h: Tensor, hidden: int) -> Tensor:  # type: ignore[override]
        gate, up = h.split(hidden, dim=-1)
        ctx.save_for_backward(h)
        ctx.hidden = hidden
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        gate, up = h.split(ctx.hidden, dim=-1)
        dh = torch.empty_like(h)
        dgate, dup = dh.split(ctx.hidden, dim=-1)
        torch.ops.aten.silu.out(gate, out=dup)
        dup.mul_(grad)
        torch.mul(grad, up, out=dgate)
        torch.ops.aten.silu_backward.grad_input(dgate, gate, grad_input=dgate)
        return dh, None


def swiglu(h: Tensor, hidden: int) -> Tensor:
    """``silu(h[..., :hidden]) * h[..., hidden:]``."""
    return _SwiGLUFn.apply(h, hidden)


def rope_table(head_dim: int, max_len: int, theta: float) -> Tensor:
    """``[max_len, head_dim/2, 2]`` float32 (cos, sin) of position * frequency.

    Computed in float64 so every position is accurate, stored as real numbers so that
    ``module.to(dtype)`` and device moves treat it like any buffer.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def apply_rope(x: Tensor, table: Tensor) -> Tensor:
    """Rotate ``x[B, T, heads, hd]`` (interleaved pairs) by ``table[T, hd/2, 2]``."""
    B, T, n, hd = x.shape
    cis = torch.view_as_complex(table.float().unsqueeze(1))  # [T, 1, hd/2]
    xc = torch.view_as_complex(x.float().reshape(B, T, n, hd // 2, 2))
    return torch.view_as_real(xc * cis).reshape(B, T, n, hd).to(x.dtype)


class _RopeQKInPlace(torch.autograd.Function):
    """Rotate the query and key heads of a fused projection output in place.

    The projection's output is not needed by its own backward, so rotating it in place
    costs no allocation forward; backward rotates its gradient back in place.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, qkv: Tensor, table: Tensor, n_rot: int, head_dim: int
    ) -> Tensor:
        B, T, _ = qkv.shape
        view = qkv.view(B, T, -1, head_dim // 2, 2)[:, :, :n_rot]
        cis = torch.view_as_complex(table.unsqueeze(1))
        torch.view_as_complex(view).mul_(cis)
        ctx.mark_dirty(qkv)
        ctx.save_for_backward(table)
        ctx.n_rot, ctx.head_dim = n_rot, head_dim
        return qkv

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        (table,) = ctx.saved_tensors
        n_rot, hd = ctx.n_rot, ctx.head_dim
        B, T, _ = g.shape
        cis = torch.view_as_complex(table.unsqueeze(1)).conj()
        if g.is_contiguous():
            # The gradient reaching here is the fresh concatenation made by the backward
            # of the q/k/v split (this Function's only consumer), so rotating it back in
            # place is safe and saves a buffer.
            torch.view_as_complex(g.view(B, T, -1, hd // 2, 2)[:, :, :n_rot]).mul_(cis)
            return g, None, None, None
        out = g.contiguous()
        torch.view_as_complex(out.view(B, T, -1, hd // 2, 2)[:, :, :n_rot]).mul_(cis)
        return out, None, None, None


def rope_qkv(qkv: Tensor, table: Tensor, n_rot: int, head_dim: int) -> Tensor:
    """Apply rotary embeddings to the first ``n_rot`` heads of a fused ``[B, T, heads*hd]``
    projection; returns ``[B, T, heads, hd]`` (in place for float32/64 tensors that are
    not views, a rotated copy otherwise, e.g. under bf16 autocast)."""
    B, T, _ = qkv.shape
    if qkv.dtype in (torch.float32, torch.float64) and qkv._base is None:
        table = table.to(qkv.dtype)
        return _RopeQKInPlace.apply(qkv, table, n_rot, head_dim).view(B, T, -1, head_dim)
    x = qkv.view(B, T, -1, head_dim)
    return torch.cat([apply_rope(x[:, :, :n_rot], table), x[:, :, n_rot:]], dim=2)
