"""An LSTM/GRU language model with the same forward contract as the GPT.

``model(input_ids) -> {"logits": Tensor[B, T, V]}``. For generation, pass an
:class:`RNNState` from :meth:`RNN.new_cache` as ``cache=``: the call starts from the stored
hidden state and leaves the new one there, so each step feeds only the newest token.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from stoker.models.config import RNNConfig, require_vocab_size

__all__ = ["RNN", "RNNConfig", "RNNState"]


class RNNState:
    """Hidden state carried between generation steps (``None`` until the first call)."""

    def __init__(self) -> None:
        self.hidden: Tensor | tuple[Tensor, Tensor] | None = None
        self.pos = 0

    def reset(self) -> None:
        self.hidden = None
        self.pos = 0


class RNN(nn.Module):
    """Embedding -> stacked LSTM/GRU -> linear head."""

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        require_vocab_size(cfg)
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        rnn_cls = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            cfg.dim,
            cfg.dim,
            num_layers=cfg.n_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0,
        )
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deterministic init from the global torch RNG (the caller seeds it).

        Embeddings (and a tied head) Normal(0, init_std); recurrent weights uniform
        +-1/sqrt(dim) as PyTorch does, LSTM forget-gate bias 1 so memory flows early on.
        """
        self.tok_emb.weight.normal_(0.0, self.config.init_std)
        if not self.config.tie_weights:
            self.lm_head.weight.normal_(0.0, self.config.init_std)
        bound = 1.0 / self.config.dim**0.5
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight"):
                p.uniform_(-bound, bound)
            else:
                p.zero_()
                if self.config.cell == "lstm":
                    h = self.config.dim
                    p[h : 2 * h].fill_(0.5)  # b_ih + b_hh forget gate = 1

    def new_cache(self, batch_size: int, max_len: int | None = None) -> RNNState:
        """An empty generation state (the arguments match :meth:`GPT.new_cache`)."""
        return RNNState()

    def forward(
        self, input_ids: Tensor, *, cache: RNNState | None = None, last_only: bool = False
    ) -> dict[str, Any]:
        """``{"logits": [B, T, V]}`` (``[B, 1, V]`` with ``last_only``)."""
        x = self.drop(self.tok_emb(input_ids))
        hidden = cache.hidden if cache is not None else None
        out, hidden = self.rnn(x, hidden)
        if last_only:
            out = out[:, -1:]
        logits = self.lm_head(self.drop(out))
        if cache is not None:
            cache.hidden = hidden
            cache.pos += input_ids.shape[1]
        return {"logits": logits}
