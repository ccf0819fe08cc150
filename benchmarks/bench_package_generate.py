"""Generation through the export path, and batching: stoker's ``generate`` (KV cache) vs
``transformers``' ``generate`` on the same weights, where the transformers model is what
``stoker export hf`` wrote (stoker GPT -> archive -> ``export_hf`` -> ``from_pretrained``);
and 16 prompts of different lengths in one batch (``TokenStream``) vs 16 single calls.
Greedy, random weights (vocab 8192, width 256, 4 layers; ~7.4M params), batch 1, 256 new
tokens. Runs alternate so machine drift hits both alike; medians are reported.
Run: ``python benchmarks/bench_package_generate.py`` (``--quick``: a 2-layer GPT of width 64, 8
new tokens, 4 prompts of 4-7 tokens, 2 repetitions).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from stoker.infer.generate import TokenStream, generate
from stoker.models import GPTConfig, build_model, count_parameters
from stoker.package.hf_export import export_hf
from stoker.package.packing import write_archive

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


def _median_pair(a, b, reps: int) -> tuple[float, float]:
    ta, tb = [], []
    for i in range(reps):
        for name in (("a", "b") if i % 2 == 0 else ("b", "a")):
            t0 = time.perf_counter()
            (a if name == "a" else b)()
            (ta if name == "a" else tb).append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    _quick.add(ap)
    args = ap.parse_args()
    if args.quick:  # one thread: two spinning on a loaded machine wait for each other per op
        args.new, args.reps, args.threads = 8, 2, args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(_quick.machine(args.quick))
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    size = (dict(vocab_size=1024, dim=64, n_layers=2, n_heads=2, ffn_hidden=176, max_seq_len=64)
            if args.quick else
            dict(vocab_size=8192, dim=256, n_layers=4, n_heads=4, ffn_hidden=688, max_seq_len=512))
    ours = build_model(GPTConfig(**size, tie_weights=False)).eval()
    vocab = size["vocab_size"]
    with tempfile.TemporaryDirectory() as tmp:
        arch = write_archive(Path(tmp) / "m.stoker", model_config=ours.config.model_dump(),
                             state_dict=ours.state_dict(), tokenizer=None, lineage={})
        out = export_hf(str(arch), Path(tmp) / "hf")
        hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab, (1, args.prompt), generator=gen)
    mask = torch.ones_like(x)

    def run_hf() -> torch.Tensor:
        return hf.generate(x, attention_mask=mask, max_new_tokens=args.new,
                           min_new_tokens=args.new, do_sample=False, eos_token_id=None,
                           pad_token_id=0)

    def run_ours() -> torch.Tensor:
        return generate(ours, x, args.new, temperature=0)

    same = int((run_ours()[0] == run_hf()[0]).sum()) - args.prompt
    print(f"stoker GPT {count_parameters(ours) / 1e6:.2f}M params -> archive -> export hf -> "
          f"transformers {transformers.__version__}; prompt {args.prompt}, {args.new} new "
          f"tokens, greedy, batch 1, {torch.get_num_threads()} threads")
    t_ours, t_hf = _median_pair(run_ours, run_hf, args.reps)
    print(f"KV cache: stoker {args.new / t_ours:7.1f} tok/s | transformers (exported) "
          f"{args.new / t_hf:7.1f} tok/s | ratio {t_hf / t_ours:.2f}x | same tokens "
          f"{same}/{args.new}")

    n_prompts, n = (4, 8) if args.quick else (16, 64)
    prompts = [torch.randint(0, vocab, (4 + i,), generator=gen).tolist() for i in range(n_prompts)]

    def batched() -> None:
        for _ in TokenStream(ours, prompts, n, temperature=0).steps():
            pass

    def singles() -> None:
        for p in prompts:
            generate(ours, torch.tensor([p]), n, temperature=0)

    t_b, t_s = _median_pair(batched, singles, args.reps)
    k = n_prompts
    print(f"{k} prompts (4-{3 + k} tokens), {n} new tokens each: one batch {k * n / t_b:7.1f} "
          f"tok/s ({t_b:.2f} s) | {k} single calls {k * n / t_s:7.1f} tok/s ({t_s:.2f} s) | "
          f"ratio {t_s / t_b:.2f}x")


if __name__ == "__main__":
    main()
