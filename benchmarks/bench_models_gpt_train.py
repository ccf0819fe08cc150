"""GPT training throughput on CPU: stoker's GPT vs a nanoGPT-style reference, same shapes.

Both models have ~10.7M parameters (6 layers, width 384, 6 heads, context 256, char vocab
65, no biases, tied embeddings, no dropout) and run the same loop: forward, cross-entropy,
backward, AdamW step. Three runs alternate step by step (so machine drift hits all alike):

- ``stoker``: stoker's GPT with the optimizer stoker's Trainer builds
  (:func:`stoker.train.optim.build_optimizer`: fused AdamW on CPU) — what a user gets;
- ``stoker model, nanoGPT optimizer``: the model alone, with the reference's optimizer;
- the nanoGPT-style reference with nanoGPT's optimizer set-up on CPU (for-each AdamW).

The figures are the median and the best (least disturbed) step time, and the median CPU
time per step (the least load-sensitive figure with ``--threads 1``).
Run: ``python benchmarks/bench_models_gpt_train.py [--threads 1] [--steps 12] [--compile]``
(``--compile`` compiles all models, the setting nanoGPT's own train.py uses by default;
``--quick``: 2 layers of width 64, batch 2 x 32, 2 timed steps).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stoker.models import GPTConfig, build_model, count_parameters
from stoker.train.optim import build_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


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


# --- The same Llama architecture as stoker's GPT, written the nanoGPT way (plain modules,
# autograd for every op; the style of Karpathy's llama2.c model.py): RMSNorm, real-valued
# rotary embeddings on interleaved pairs, separate q/k/v and gate/up projections, SwiGLU. ---
class LlamaRMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_cos_sin(head_dim: int, seq: int, theta: float = 10000.0):
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(seq).float(), freqs)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """x [B, T, H, hd], pairs (x[2i], x[2i+1]) rotated by the angle of position t."""
    xr, xi = x.float().reshape(*x.shape[:-1], -1, 2).unbind(-1)
    cos, sin = cos.view(1, x.shape[1], 1, -1), sin.view(1, x.shape[1], 1, -1)
    out = torch.stack([xr * cos - xi * sin, xr * sin + xi * cos], dim=-1)
    return out.flatten(3).type_as(x)


class LlamaAttention(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.h, self.hd = h, d // h
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q = apply_rotary(self.wq(x).view(B, T, self.h, self.hd), cos, sin)
        k = apply_rotary(self.wk(x).view(B, T, self.h, self.hd), cos, sin)
        v = self.wv(x).view(B, T, self.h, self.hd)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2), is_causal=True)
        return self.wo(y.transpose(1, 2).contiguous().view(B, T, C))


class LlamaBlock(nn.Module):
    def __init__(self, d: int, h: int, hidden: int) -> None:
        super().__init__()
        self.attention_norm = LlamaRMSNorm(d)
        self.attention = LlamaAttention(d, h)
        self.ffn_norm = LlamaRMSNorm(d)
        self.w1 = nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)
        self.w3 = nn.Linear(d, hidden, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class RefLlama(nn.Module):
    def __init__(self, vocab: int, block: int, n_layer: int, d: int, h: int, hidden: int):
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaBlock(d, h, hidden) for _ in range(n_layer))
        self.norm = LlamaRMSNorm(d)
        self.output = nn.Linear(d, vocab, bias=False)
        self.tok_embeddings.weight = self.output.weight
        cos, sin = rope_cos_sin(d // h, block)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T])
        return self.output(self.norm(x))


def nanogpt_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """As nanoGPT's ``configure_optimizers`` builds it on a CPU: decay on 2-D weights only,
    and ``fused`` only on CUDA, so torch's default for-each AdamW here."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile both models, as nanoGPT's train.py does by default")
    _quick.add(ap)
    args = ap.parse_args()
    if args.quick:  # one thread: two spinning on a loaded machine wait for each other per op
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(_quick.machine(args.quick))
    vocab, n_layer, d, h = 65, 6, 384, 6
    if args.quick:
        n_layer, d, h = 2, 64, 2
        args.batch, args.seq, args.steps, args.warmup = 2, 32, 2, 1

    def stoker_gpt() -> nn.Module:
        torch.manual_seed(0)
        return build_model(GPTConfig(vocab_size=vocab, n_layers=n_layer, dim=d, n_heads=h,
                                     max_seq_len=args.seq, tie_weights=True))

    ours, ours_model_only = stoker_gpt(), stoker_gpt()
    hidden = ours.config.hidden_dim
    torch.manual_seed(0)
    ref = RefGPT(vocab, args.seq, n_layer, d, h)
    torch.manual_seed(0)
    llama = RefLlama(vocab, args.seq, n_layer, d, h, hidden)
    print(f"params: stoker {count_parameters(ours) / 1e6:.2f}M, nanoGPT "
          f"{sum(p.numel() for p in ref.parameters()) / 1e6:.2f}M, Llama reference "
          f"{sum(p.numel() for p in llama.parameters()) / 1e6:.2f}M; "
          f"batch {args.batch} x {args.seq} tokens, {torch.get_num_threads()} threads")
    print(f"same model check: max |logits(stoker) - logits(Llama reference)| = "
          f"{same_model_gap(ours, RefLlama(vocab, args.seq, n_layer, d, h, hidden), vocab, args.seq):.1e}"
          " with stoker's weights copied into a spare copy")
    # stoker trains with the optimizer its Trainer builds from the recipe's `optim` node.
    ours_opt = build_optimizer({"_target_": "torch.optim.AdamW", "lr": 3e-4,
                                "betas": [0.9, 0.95], "weight_decay": 0.1}, ours)
    print(f"optimizers: stoker {type(ours_opt).__name__}(fused={ours_opt.defaults['fused']}), "
          "references AdamW(fused=None: for-each, as nanoGPT sets it up on CPU)")

    def runner(model, opt, get_logits):
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

    models = (ours, ours_model_only, ref, llama)
    if args.compile:
        ours, ours_model_only, ref, llama = (torch.compile(m) for m in models)
        args.warmup = max(args.warmup, 3)  # compilation happens in the first steps
    runs = {
        "stoker": runner(ours, ours_opt, lambda m, x: m(x)["logits"]),
        "stoker model, reference optimizer": runner(
            ours_model_only, nanogpt_optimizer(models[1]), lambda m, x: m(x)["logits"]),
        "nanoGPT (GPT-2 architecture)": runner(ref, nanogpt_optimizer(models[2]),
                                               lambda m, x: m(x)),
        "Llama reference, nanoGPT style": runner(llama, nanogpt_optimizer(models[3]),
                                                 lambda m, x: m(x)),
    }
    for _ in range(args.warmup):
        for step in runs.values():
            step()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    order = list(runs)
    for i in range(args.steps):  # rotate the order too, so none always goes first
        k = i % len(order)
        for name in order[k:] + order[:k]:
            times[name].append(runs[name]())
    tokens = args.batch * args.seq
    wall = {n: statistics.median(w for w, _ in t) for n, t in times.items()}
    best = {n: min(w for w, _ in t) for n, t in times.items()}
    cpu = {n: statistics.median(c for _, c in t) for n, t in times.items()}
    for n in runs:
        print(f"{n:34s}: median {wall[n] * 1e3:7.1f} ms/step {tokens / wall[n]:6.0f} tok/s | "
              f"best {best[n] * 1e3:7.1f} ms | CPU {cpu[n] * 1e3:7.1f} ms/step")
    for n in order[:2]:
        for r in order[2:]:
            print(f"ratio {n} / {r} (tok/s): median {wall[r] / wall[n]:.3f}x, "
                  f"best {best[r] / best[n]:.3f}x, CPU time {cpu[r] / cpu[n]:.3f}x")


def same_model_gap(ours: nn.Module, llama: RefLlama, vocab: int, seq: int) -> float:
    """Copy stoker's weights into the Llama reference and compare logits: proof that the
    reference computes the same function (stoker fuses q/k/v and gate/up into one matrix)."""
    hd = ours.config.head_dim
    with torch.no_grad():
        llama.output.weight.copy_(ours.lm_head.weight)
        llama.norm.weight.copy_(ours.norm.weight)
        for mine, theirs in zip(ours.layers, llama.layers):
            q, k, v = mine.attn.wqkv.weight.split(
                [mine.attn.n_heads * hd, mine.attn.n_kv_heads * hd, mine.attn.n_kv_heads * hd])
            theirs.attention.wq.weight.copy_(q)
            theirs.attention.wk.weight.copy_(k)
            theirs.attention.wv.weight.copy_(v)
            theirs.attention.wo.weight.copy_(mine.attn.wo.weight)
            gate, up = mine.ffn.w13.weight.split(mine.ffn.hidden)
            theirs.w1.weight.copy_(gate)
            theirs.w3.weight.copy_(up)
            theirs.w2.weight.copy_(mine.ffn.w2.weight)
            theirs.attention_norm.weight.copy_(mine.attn_norm.weight)
            theirs.ffn_norm.weight.copy_(mine.ffn_norm.weight)
        x = torch.randint(0, vocab, (2, seq), generator=torch.Generator().manual_seed(3))
        return (ours(x)["logits"] - llama(x)).abs().max().item()

if __name__ == "__main__":
    main()
