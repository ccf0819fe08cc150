"""A Llama-style GPT: RMSNorm, rotary embeddings, SwiGLU, grouped-query attention, KV cache.

Written for eager speed on CPU as much as on GPU: the query/key/value projections are one
matmul, the SwiGLU gate and up projections are one matmul, rotary embeddings are one
complex multiply over queries and keys together, RMSNorm and SwiGLU have hand-written
backward passes (:mod:`stoker.models.ops`), and attention is
``scaled_dot_product_attention`` (GQA without repeating keys). Rotary pairs are interleaved
(Meta's layout); :mod:`stoker.models.hf` maps the weights onto ``transformers``'
``LlamaForCausalLM``.

Forward contract: ``model(input_ids) -> {"logits": Tensor[B, T, V]}``. For generation,
pass a :class:`KVCache` from :meth:`GPT.new_cache` as ``cache=``; the call appends the new
keys/values and advances the cache position.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stoker.errors import UserError
from stoker.models.config import GPTConfig, require_vocab_size
from stoker.models.ops import RMSNorm, rope_split_heads, rope_table, swiglu

__all__ = ["GPT", "GPTConfig", "KVCache"]


class KVCache:
    """Preallocated keys and values of every layer, ``[B, n_kv_heads, max_len, head_dim]``.

    ``pos`` is how many positions are filled; a forward pass with ``cache=`` writes its
    keys/values at ``pos`` and advances it once all layers ran.
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.max_len = max_len
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0


def residual_linear(
    linear: nn.Linear, y: Tensor, residual: Tensor | None, drop: nn.Dropout
) -> Tensor:
    """``residual + drop(linear(y))``, as one ``addmm`` where that is the same math.

    Folding the residual add into the matrix multiply saves a pass over the residual
    stream and a fresh buffer per block (results agree to float rounding). It is skipped
    when dropout is active, with a bias, and under autocast (which would cast the residual
    stream to low precision).
    """
    if residual is None:
        return drop(linear(y))
    if (
        linear.bias is not None
        or (drop.p > 0 and drop.training)
        or torch.is_autocast_enabled(y.device.type)
        or y.dtype != residual.dtype
    ):
        return residual + drop(linear(y))
    out = torch.addmm(residual.reshape(-1, residual.shape[-1]), y.reshape(-1, y.shape[-1]),
                      linear.weight.t())
    return out.view(residual.shape)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.kv_heads
        self.head_dim = cfg.head_dim
        self.dropout = cfg.dropout
        qkv_out = (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, qkv_out, bias=cfg.bias)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        rope: Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        mask: Tensor | None = None,
        residual: Tensor | None = None,
    ) -> Tensor:
        """Attention output, plus ``residual`` when given (added inside the projection)."""
        B, T, _ = x.shape
        H, K, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = rope_split_heads(self.wqkv(x), rope, H, K, hd)
        is_causal = T > 1
        if cache is not None:
            start = cache.pos
            cache.k[layer][:B, :, start : start + T] = k
            cache.v[layer][:B, :, start : start + T] = v
            k = cache.k[layer][:B, :, : start + T]
            v = cache.v[layer][:B, :, : start + T]
            if start > 0:
                is_causal = False  # queries sit after the cached prefix: explicit mask
        gqa = {"enable_gqa": True} if K != H else {}
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None,
            **gqa,
        )
        y = y.transpose(1, 2).reshape(B, T, H * hd)
        return residual_linear(self.wo, y, residual, self.resid_drop)


class SwiGLU(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.hidden = cfg.hidden_dim
        self.w13 = nn.Linear(cfg.dim, 2 * self.hidden, bias=cfg.bias)  # gate and up, fused
        self.w2 = nn.Linear(self.hidden, cfg.dim, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """MLP output, plus ``residual`` when given (added inside the projection)."""
        return residual_linear(self.w2, swiglu(self.w13(x), self.hidden), residual, self.drop)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(self, x: Tensor, rope: Tensor, cache: KVCache | None, layer: int,
                mask: Tensor | None) -> Tensor:
        x = self.attn(self.attn_norm(x), rope, cache, layer, mask, residual=x)
        return self.ffn(self.ffn_norm(x), residual=x)


class GPT(nn.Module):
    """Decoder-only transformer language model (Llama architecture)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        require_vocab_size(cfg)
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        # Derived from the config, so kept out of the state dict.
        self.register_buffer(
            "rope", rope_table(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta), persistent=False
        )
        self.reset_parameters()

    def rebuild_buffers(self) -> None:
        """Recompute the derived (non-saved) rotary table on the weights' device.

        Restoring builds the model on the ``meta`` device and adopts the saved tensors
        (no random init to throw away); this fills in what the config derives.
        """
        cfg = self.config
        self.rope = rope_table(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta).to(
            self.tok_emb.weight.device)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deterministic init from the global torch RNG (the caller seeds it).

        Normal(0, init_std) for linear and embedding weights, residual output projections
        scaled by 1/sqrt(2 * n_layers) (GPT-2), zero biases, unit norm weights.
        """
        std = self.config.init_std
        resid_std = std / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            elif name.endswith(("wo.weight", "w2.weight")):
                p.normal_(0.0, resid_std)
            else:  # named_parameters() yields a tied weight once
                p.normal_(0.0, std)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache on this model's device and dtype."""
        cfg = self.config
        w = self.tok_emb.weight
        return KVCache(
            cfg.n_layers,
            batch_size,
            cfg.kv_heads,
            min(max_len or cfg.max_seq_len, cfg.max_seq_len),
            cfg.head_dim,
            device=w.device,
            dtype=w.dtype,
        )

    def forward(
        self, input_ids: Tensor, *, cache: KVCache | None = None, last_only: bool = False
    ) -> dict[str, Any]:
        """``{"logits": [B, T, V]}``; ``last_only`` computes the last position's only
        (``[B, 1, V]``), which is all generation needs."""
        B, T = input_ids.shape
        start = cache.pos if cache is not None else 0
        limit = cache.max_len if cache is not None else self.config.max_seq_len
        if start + T > limit:
            raise UserError(
                f"sequence of {start + T} tokens is longer than the model's context "
                f"({limit}); crop the input or raise model.max_seq_len"
            )
        rope = self.rope[start : start + T]
        mask = None
        if cache is not None and start > 0 and T > 1:
            mask = torch.ones(T, start + T, dtype=torch.bool, device=input_ids.device).tril(start)
        x = self.drop(self.tok_emb(input_ids))
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, cache, i, mask)
        if last_only:
            x = x[:, -1:]
        logits = self.lm_head(self.norm(x))
        if cache is not None:
            cache.pos = start + T
        return {"logits": logits}
