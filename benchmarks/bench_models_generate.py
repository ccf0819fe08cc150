"""Greedy generation speed: stoker's ``generate`` vs ``transformers``' ``generate`` on the
same weights (a random Llama of ~7.4M parameters, batch 1, 256 new tokens), with and
without a KV cache. The Llama is built locally from a ``LlamaConfig`` (no download) and
converted with ``stoker.models.hf.from_hf``; both produce the same tokens (checked).
Runs alternate between the two so machine drift hits both alike; medians are reported.
Run: ``python benchmarks/bench_models_generate.py`` (``--quick``: a 2-layer Llama of width 64, 8 new
tokens, 1 repetition).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from stoker.infer.generate import generate
from stoker.models import count_parameters
from stoker.models.hf import from_hf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=int, default=256, help="new tokens")
    ap.add_argument("--prompt", type=int, default=8, help="prompt tokens")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    _quick.add(ap)
    args = ap.parse_args()
    if args.quick:  # one thread: two spinning on a loaded machine wait for each other per op
        args.new, args.reps, args.threads = 8, 1, args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(_quick.machine(args.quick))
    import transformers

    transformers.logging.set_verbosity_error()
    size = (dict(vocab_size=1024, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
            if args.quick else
            dict(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512))
    cfg = transformers.LlamaConfig(**size, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    ours = from_hf(hf)
    n_params = count_parameters(ours)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, cfg.vocab_size, (1, args.prompt), generator=gen)
    mask = torch.ones_like(x)

    def run_hf(use_cache: bool) -> torch.Tensor:
        return hf.generate(x, attention_mask=mask, max_new_tokens=args.new,
                           min_new_tokens=args.new, do_sample=False, use_cache=use_cache,
                           eos_token_id=None, pad_token_id=0)

    def run_ours(use_cache: bool) -> torch.Tensor:
        return generate(ours, x, args.new, temperature=0, use_cache=use_cache)

    print(f"random Llama {n_params / 1e6:.2f}M params, prompt {args.prompt}, {args.new} new "
          f"tokens, greedy, batch 1, {torch.get_num_threads()} threads, "
          f"transformers {transformers.__version__}")
    for use_cache in (True, False):
        a, b = run_ours(use_cache), run_hf(use_cache)  # warm-up, and same tokens?
        same = int((a[0] == b[0]).sum()) - args.prompt
        t_ours, t_hf = [], []
        for i in range(args.reps):
            for name in (("ours", "hf") if i % 2 == 0 else ("hf", "ours")):
                t0 = time.perf_counter()
                (run_ours if name == "ours" else run_hf)(use_cache)
                (t_ours if name == "ours" else t_hf).append(time.perf_counter() - t0)
        r_ours, r_hf = args.new / statistics.median(t_ours), args.new / statistics.median(t_hf)
        label = "with cache   " if use_cache else "without cache"
        print(f"{label}: stoker {r_ours:7.1f} tok/s | transformers {r_hf:7.1f} tok/s | "
              f"ratio {r_ours / r_hf:.2f}x | same tokens {same}/{args.new}")


if __name__ == "__main__":
    main()
