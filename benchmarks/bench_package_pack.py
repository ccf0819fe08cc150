"""Pack + restore of a ~110M-parameter GPT vs raw safetensors save + load of the same tensors.

stoker: ``write_archive`` (weights streamed from each tensor's memory into the tar member,
SHA-256 on a helper thread as they go out, manifest, fsync, atomic rename) then ``restore``
(member checks, SHA-256 verified before use, tensors made in place over the verified
member's mapping, model built on the meta device with its init skipped, tensors adopted).
Also shown: one SHA-256 pass over the same bytes, since stoker hashes them twice (pack
and restore) and the baseline never, so ``base + 2 * sha256`` is the floor of this design. Baseline: ``safetensors.torch.save_file`` +
``load_file`` (which maps the file lazily, so its load reads no data); also shown: the
baseline plus touching every tensor once (what using the weights costs it).
Files are in a temporary directory next to the repository (same disk); alternating runs,
medians. Run: ``python benchmarks/bench_package_pack.py`` (``--quick``: a ~0.2M-parameter GPT,
one repetition).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stoker.models import GPTConfig, build_model, count_parameters
from stoker.package.packing import write_archive
from stoker.package.restoring import restore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    _quick.add(ap)
    args = ap.parse_args()
    print(_quick.machine(args.quick))
    torch.manual_seed(0)
    if args.quick:
        args.reps = 1
        torch.set_num_threads(1)
        cfg = GPTConfig(vocab_size=1024, dim=64, n_layers=2, n_heads=2, max_seq_len=128,
                        tie_weights=True)
    else:
        cfg = GPTConfig(vocab_size=32000, dim=768, n_layers=12, n_heads=12, max_seq_len=1024,
                        tie_weights=True)
    model = build_model(cfg).eval()
    state = model.state_dict()
    plain = {k: v for k, v in state.items() if k != "lm_head.weight"}  # tied: stored once
    nbytes = sum(v.numel() * v.element_size() for v in plain.values())
    print(f"GPT {count_parameters(model) / 1e6:.1f}M params, {nbytes / 1e6:.0f} MB of fp32 "
          f"tensors, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        arc, raw = Path(tmp) / "m.stoker", Path(tmp) / "m.safetensors"

        def ours() -> None:
            write_archive(arc, model_config=cfg.model_dump(), state_dict=state,
                          tokenizer=None, lineage={})
            restore(arc)

        def base() -> None:
            save_file(plain, raw)
            load_file(raw)

        def base_sync() -> None:  # durable like the archive: fsync before it counts
            save_file(plain, raw)
            with open(raw, "rb+") as f:
                os.fsync(f.fileno())
            load_file(raw)

        def base_touch() -> None:
            save_file(plain, raw)
            for t in load_file(raw).values():
                t.sum()

        blob = memoryview(bytearray(nbytes))

        def sha() -> None:  # what verifying the weights costs, once
            hashlib.sha256(blob).hexdigest()

        fns = {"ours": ours, "base": base, "sync": base_sync, "touch": base_touch, "sha": sha}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for i in range(args.reps):
            order = list(fns) if i % 2 == 0 else list(reversed(fns))
            for name in order:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - t0)
        # split of stoker's time
        t0 = time.perf_counter()
        write_archive(arc, model_config=cfg.model_dump(), state_dict=state, tokenizer=None,
                      lineage={})
        t1 = time.perf_counter()
        r = restore(arc)
        t2 = time.perf_counter()
        x = torch.randint(0, cfg.vocab_size, (1, 8))
        assert torch.equal(r.model(x)["logits"], model(x)["logits"])
    m = {k: statistics.median(v) for k, v in times.items()}
    print(f"stoker pack+restore {m['ours']:.3f} s (pack {t1 - t0:.3f}, restore {t2 - t1:.3f}) "
          f"| safetensors save+load {m['base']:.3f} s | ratio {m['ours'] / m['base']:.2f}x")
    print(f"other baselines: save+fsync+load {m['sync']:.3f} s (ratio "
          f"{m['ours'] / m['sync']:.2f}x); save+load+touch every tensor {m['touch']:.3f} s "
          f"(ratio {m['ours'] / m['touch']:.2f}x)")
    floor = m["base"] + 2 * m["sha"]
    print(f"one SHA-256 pass over the weights {m['sha']:.3f} s; floor base + 2 * sha256 = "
          f"{floor:.3f} s (ratio {floor / m['base']:.2f}x); stoker is {m['ours'] / floor:.2f}x "
          "that floor")
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
