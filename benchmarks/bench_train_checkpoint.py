"""Checkpoint save + load: stoker's CheckpointManager vs plain torch.save/torch.load.

The state is what a real run checkpoints: a ~10M-parameter GPT-like model made of plain
nn.Linear/Embedding layers, its AdamW state after one step (so 3x the weights), RNG states
and a little JSON. Both sides write to the same disk in the same run and load back to CPU.

stoker does more work than torch.save (checksums every byte, writes a commit marker, renames
a temp dir, verifies on load, no pickle), so the ratio is the price of safety. fsync is
measured separately: torch.save does not fsync, so the headline ratio is with fsync off, and
the fsync-on figure shows what durability costs on this disk.

Run: python benchmarks/bench_train_checkpoint.py [--repeats 5] [--dir PATH] [--quick]
(``--quick``: a ~0.2M-parameter model, one repetition.)
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from stoker.train.checkpoint import CheckpointManager
from stoker.train.rng import capture_rng_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.norm2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d, bias=False)
        self.down = nn.Linear(4 * d, d, bias=False)


class TinyGPT(nn.Module):
    """~10M parameters: 6 layers of width 384, vocab 2048 (the shapes matter, not the math)."""

    def __init__(self, vocab: int = 2048, d: int = 384, n_layers: int = 6):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)


def make_state(quick: bool = False) -> dict:
    torch.manual_seed(0)
    model = TinyGPT(vocab=512, d=64, n_layers=2) if quick else TinyGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": capture_rng_state(),
        "step": 1000,
        "data": {"epoch": 1, "index": 12345},
        "config": {"model": {"dim": 384, "n_layers": 6}, "optim": {"lr": 3e-4}},
    }, n


def time_torch(state: dict, root: Path, mmap: bool = False) -> tuple[float, float]:
    path = root / "torch.pt"
    t0 = time.perf_counter()
    torch.save(state, path)
    t1 = time.perf_counter()
    torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    t2 = time.perf_counter()
    path.unlink()
    return t1 - t0, t2 - t1


def time_stoker(state: dict, root: Path, *, fsync: bool, checksum: str) -> tuple[float, float]:
    mgr = CheckpointManager(root / "ckpt", keep_last=1, fsync=fsync, checksum=checksum)
    t0 = time.perf_counter()
    p = mgr.save(1000, state)
    t1 = time.perf_counter()
    mgr.load(p)
    t2 = time.perf_counter()
    shutil.rmtree(root / "ckpt")
    return t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    _quick.add(ap)
    args = ap.parse_args()
    torch.set_num_threads(1 if args.quick else min(2, os.cpu_count() or 1))
    print(_quick.machine(args.quick))
    if args.quick:
        args.repeats = 1
    state, n = make_state(args.quick)
    root = Path(tempfile.mkdtemp(prefix="stoker-bench-ckpt-", dir=args.dir))
    nbytes = sum(
        t.numel() * t.element_size()
        for part in (state["model"], *state["optimizer"]["state"].values())
        for t in part.values()
        if isinstance(t, torch.Tensor)
    )
    print(f"state: {n / 1e6:.1f}M params, {nbytes / 2**20:.0f} MiB of tensors; writing to {root}")
    configs = [
        ("torch.save/load", None),
        ("torch.save/load(mmap=True)", "mmap"),
        ("stoker crc32, fsync off", dict(fsync=False, checksum="crc32")),
        ("stoker sha256, fsync off", dict(fsync=False, checksum="sha256")),
        ("stoker crc32, fsync on", dict(fsync=True, checksum="crc32")),
    ]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in configs}
    try:
        for _ in range(args.repeats):  # interleave so machine drift hits every side equally
            for name, kw in configs:
                if kw is None or kw == "mmap":
                    results[name].append(time_torch(state, root, mmap=kw == "mmap"))
                else:
                    results[name].append(time_stoker(state, root, **kw))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(name: str) -> tuple[float, float, float]:
        s = statistics.median(x[0] for x in results[name])
        ld = statistics.median(x[1] for x in results[name])
        tot = statistics.median(x[0] + x[1] for x in results[name])
        return s, ld, tot

    base = med("torch.save/load")[2]
    print(f"{'':28s} {'save ms':>9s} {'load ms':>9s} {'total ms':>9s} {'vs torch':>9s}")
    for name, _ in configs:
        s, ld, tot = med(name)
        print(f"{name:28s} {s * 1e3:9.1f} {ld * 1e3:9.1f} {tot * 1e3:9.1f} {tot / base:8.2f}x")
    fs_on = med("stoker crc32, fsync on")[2]
    fs_off = med("stoker crc32, fsync off")[2]
    print(f"ratio (stoker crc32, fsync off) / torch: {fs_off / base:.2f}x  (target <= 1.2x)")
    print(f"ratio vs torch.load(mmap=True), the fairer loader: "
          f"{fs_off / med('torch.save/load(mmap=True)')[2]:.2f}x")
    print(f"cost of fsync: +{(fs_on - fs_off) * 1e3:.1f} ms per save ({fs_on / fs_off:.2f}x)")


if __name__ == "__main__":
    main()
