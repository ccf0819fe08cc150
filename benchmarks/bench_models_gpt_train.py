"""GPT training throughput on CPU: stoker's GPT vs a nanoGPT-style reference, same shapes.

Both models have ~10.7M parameters (6 layers, width 384, 6 heads, context 256, char vocab
65, no biases, tied embeddings, no dropout) and run the same loop: forward, cross-entropy,
backward, AdamW step. Steps alternate between the two models so machine drift hits both
alike; the figures are the median and the best (least disturbed) step time.
Run: ``python benchmarks/bench_models_gpt_train.py [--threads 1] [--steps 12] [--compile]``
(``--compile`` compiles both models, the setting nanoGPT's own train.py uses by default).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from stoker.models import GPTConfig, build_model, count_parameters


# --- nanoGPT-style reference (after Karpathy's model.py: LayerNorm, learned positions,
# fused qkv, GELU MLP, flash attention via SDPA, tied embeddings) --------------------------
class RefAttention(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(d, 3 * d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)
        self.h = h

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.h, C // self.h).transpose(1, 2)
        k = k.view(B, T, self.h, C // self.h).transpose(1, 2)
        v = v.view(B, T, self.h, C // self.h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class RefBlock(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, bias=False)
        self.attn = RefAttention(d, h)
        self.ln_2 = nn.LayerNorm(d, bias=False)
        self.c_fc = nn.Linear(d, 4 * d, bias=False)
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    def __init__(self, vocab: int, block: int, n_layer: int, d: int, h: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.h = nn.ModuleList(RefBlock(d, h) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile both models, as nanoGPT's train.py does by default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab, n_layer, d, h = 65, 6, 384, 6

    torch.manual_seed(0)
    ours = build_model(GPTConfig(vocab_size=vocab, n_layers=n_layer, dim=d, n_heads=h,
                                 max_seq_len=args.seq, tie_weights=True))
    torch.manual_seed(0)
    ref = RefGPT(vocab, args.seq, n_layer, d, h)
    print(f"params: stoker {count_parameters(ours) / 1e6:.2f}M, "
          f"reference {sum(p.numel() for p in ref.parameters()) / 1e6:.2f}M; "
          f"batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads")

    def runner(model, get_logits):
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        g = torch.Generator().manual_seed(1)

        def step() -> tuple[float, float]:
            x = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
            y = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
            t0, c0 = time.perf_counter(), time.process_time()
            logits = get_logits(model, x)
            loss = F.cross_entropy(logits.view(-1, vocab), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return time.perf_counter() - t0, time.process_time() - c0

        return step

    if args.compile:
        ours, ref = torch.compile(ours), torch.compile(ref)
        args.warmup = max(args.warmup, 3)  # compilation happens in the first steps
    step_ours = runner(ours, lambda m, x: m(x)["logits"])
    step_ref = runner(ref, lambda m, x: m(x))
    for _ in range(args.warmup):
        step_ours(), step_ref()
    r_ours, r_ref = [], []
    for i in range(args.steps):  # alternate order too, so neither always goes first
        if i % 2:
            r_ours.append(step_ours()); r_ref.append(step_ref())
        else:
            r_ref.append(step_ref()); r_ours.append(step_ours())
    tokens = args.batch * args.seq
    t_ours, t_ref = [w for w, _ in r_ours], [w for w, _ in r_ref]
    c_ours, c_ref = statistics.median(c for _, c in r_ours), statistics.median(c for _, c in r_ref)
    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    b_ours, b_ref = min(t_ours), min(t_ref)
    print(f"stoker GPT : median {m_ours * 1e3:8.1f} ms/step {tokens / m_ours:7.0f} tok/s | "
          f"best {b_ours * 1e3:8.1f} ms/step {tokens / b_ours:7.0f} tok/s")
    print(f"nanoGPT ref: median {m_ref * 1e3:8.1f} ms/step {tokens / m_ref:7.0f} tok/s | "
          f"best {b_ref * 1e3:8.1f} ms/step {tokens / b_ref:7.0f} tok/s")
    print(f"ratio (stoker tok/s / reference tok/s): median {m_ref / m_ours:.3f}x, "
          f"best {b_ref / b_ours:.3f}x; CPU time per step {c_ours * 1e3:.0f} vs "
          f"{c_ref * 1e3:.0f} ms -> {c_ref / c_ours:.3f}x (the least load-sensitive figure "
          f"with --threads 1)")


if __name__ == "__main__":
    main()
