"""Small fused building blocks for the GPT, written for eager speed on CPU.

In eager mode every elementwise op is a full pass over memory (and, with several threads
on a busy machine, a synchronisation point), so these blocks keep the pass count low:

- :func:`rms_norm`: backward through LayerNorm's fused kernel (mean 0, rstd = RMS scale)
  plus a one-pass correction; autograd's composite ``F.rms_norm`` runs about ten ops.
- :func:`swiglu`: ``silu(gate) * up`` on the fused ``[gate | up]`` projection; the backward
  writes both halves of the gradient in place instead of concatenating them.
- :func:`rope_split_heads` / :func:`apply_rope`: rotary embedding as one complex multiply
  over interleaved pairs (the Meta Llama layout; :mod:`stoker.models.hf` permutes rows for
  Hugging Face's rotate-half layout), in place on the fused q/k/v projection, whose
  gradient is assembled and rotated back in one pass. About 3x cheaper than the roll/cat
  formulations.

On CPU a fresh large buffer costs page faults on first touch, which in eager mode can
cost more than the arithmetic; hence the in-place updates and reused temporaries.

All three match their textbook formulas to float rounding (tested). Under ``torch.compile``
they switch to the plain formulas (real-valued for RoPE), which inductor fuses into a few
generated kernels: hand-written autograd Functions and complex numbers would stay opaque.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RMSNorm", "apply_rope", "rms_norm", "rope_split_heads", "rope_table", "swiglu"]


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
            # r * mean(g*w) is one number per row: form it first, then one broadcast add
            # (a broadcast addcmul_ over the full tensor costs about 4x as much).
            m = torch.mv(g.reshape(-1, d), weight).view(r.shape).mul_(r).div_(d)
            gx = gx.add_(m)
        return gx, dw, None


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dimension."""
    if x.dtype != weight.dtype:  # mixed precision: compute in the wider of the two
        dtype = torch.promote_types(x.dtype, weight.dtype)
        x, weight = x.to(dtype), weight.to(dtype)
    if torch.compiler.is_compiling():  # plain math: inductor fuses it into one kernel
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight
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
    if torch.compiler.is_compiling():  # plain math: inductor fuses it into one kernel
        gate, up = h.split(hidden, dim=-1)
        return F.silu(gate) * up
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
    if torch.compiler.is_compiling():  # real arithmetic: inductor has no complex kernels
        a, b = x.float().unflatten(-1, (hd // 2, 2)).unbind(-1)
        cos, sin = table.float().unsqueeze(1).unbind(-1)  # [T, 1, hd/2] each
        out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
        return out.flatten(-2).to(x.dtype)
    cis = torch.view_as_complex(table.float().unsqueeze(1))  # [T, 1, hd/2]
    xc = torch.view_as_complex(x.float().reshape(B, T, n, hd // 2, 2))
    return torch.view_as_real(xc * cis).reshape(B, T, n, hd).to(x.dtype)


class _RopeSplitHeads(torch.autograd.Function):
    """Rotate the query and key heads of a fused q/k/v projection in place and hand out
    q, k, v as ``[B, heads, T, hd]`` views for attention.

    Forward writes over the projection output, which nothing else reads (the projection's
    own backward needs its input, not its output). Backward builds the projection's
    gradient in one buffer, rotating the query and key gradients back while writing them:
    one pass where autograd would concatenate the three gradients and then rotate.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, qkv: Tensor, table: Tensor, n_q: int, n_kv: int, head_dim: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, T, _ = qkv.shape
        pairs = qkv.view(B, T, -1, head_dim // 2, 2)[:, :, : n_q + n_kv]
        torch.view_as_complex(pairs).mul_(torch.view_as_complex(table.unsqueeze(1)))
        ctx.save_for_backward(table)
        ctx.sizes = (n_q, n_kv, head_dim)
        q, k, v = qkv.view(B, T, -1, head_dim).split([n_q, n_kv, n_kv], dim=2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    @staticmethod
    def backward(ctx, dq: Tensor, dk: Tensor, dv: Tensor):  # type: ignore[override]
        (table,) = ctx.saved_tensors
        n_q, n_kv, hd = ctx.sizes
        B, _, T, _ = dq.shape
        out = dq.new_empty(B, T, n_q + 2 * n_kv, hd)
        slot_q, slot_k, slot_v = out.split([n_q, n_kv, n_kv], dim=2)
        back = torch.view_as_complex(table.unsqueeze(1)).conj()
        for grad, slot in ((dq, slot_q), (dk, slot_k)):
            g = grad.transpose(1, 2)
            if g.stride(-1) != 1:
                g = g.contiguous()
            torch.mul(torch.view_as_complex(g.unflatten(-1, (hd // 2, 2))), back,
                      out=torch.view_as_complex(slot.unflatten(-1, (hd // 2, 2))))
        slot_v.copy_(dv.transpose(1, 2))
        return out.view(B, T, -1), None, None, None, None


def rope_split_heads(
    qkv: Tensor, table: Tensor, n_q: int, n_kv: int, head_dim: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Split a fused ``[B, T, (n_q + 2*n_kv) * hd]`` projection into q, k, v of shape
    ``[B, heads, T, hd]``, with rotary embeddings applied to q and k.

    In place on float32/64 tensors that are not views (``qkv`` must then be a fresh
    projection output nothing else uses); a rotated copy otherwise, e.g. under autocast.
    """
    B, T, _ = qkv.shape
    in_place = qkv.dtype in (torch.float32, torch.float64) and qkv._base is None
    if in_place and not torch.compiler.is_compiling():
        return _RopeSplitHeads.apply(qkv, table.to(qkv.dtype), n_q, n_kv, head_dim)
    x = qkv.view(B, T, -1, head_dim)
    qk = apply_rope(x[:, :, : n_q + n_kv], table)
    q, k = qk.split([n_q, n_kv], dim=2)
    return q.transpose(1, 2), k.transpose(1, 2), x[:, :, n_q + n_kv :].transpose(1, 2)
