"""Checkpoints at scale: training stall of async vs sync saves, sharded vs full-gather saves.

(a) Stall per checkpoint, one process, full-state checkpoints of a ~100M-parameter model with
    its AdamW state (~1.2 GB of tensors), fsync on: ``CheckpointManager.save`` (the step
    waits for the whole write) vs ``save(background=True)`` (the step waits only for the
    CPU staging copy; a writer thread writes while training goes on). Between saves the
    "training" is a sleep of ``--gap`` seconds, so the writer thread gets the CPU as it
    would while a GPU computes; each stall is the time the save call held the loop,
    including any wait for the previous write (at most one in flight).
(b) Save time at 2 processes (torchrun, gloo, FSDP2 ``fully_shard``) of the same model:
    sharded (every rank writes its own shards with DCP, stoker's commit marker last) vs
    the full-state gather (``full_state_dict=True, cpu_offload=True`` to rank 0, which
    writes everything), in the same job, interleaved.

Run: python benchmarks/bench_checkpoint_scale.py [--repeats 3] [--gap 8] [--dir PATH] [--quick]
(``--quick``: a ~0.3M-parameter model, one repetition, a 0.2 s gap; (b) still runs 2 processes.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402

QUICK_SHAPE = dict(vocab=512, d=64, n_layers=2)  # --quick: ~0.3M parameters


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.up = nn.Linear(d, 4 * d, bias=False)
        self.down = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never run
        return x


class Model(nn.Module):
    """~105M parameters: 7 blocks of width 1024, vocab 8192, untied head."""

    def __init__(self, vocab: int = 8192, d: int = 1024, n_layers: int = 7):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(n_layers))
        self.head = nn.Linear(d, vocab, bias=False)


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt


def bench_stall(root: Path, repeats: int, gap: float, quick: bool = False
                ) -> dict[str, list[float]]:
    from stoker.train.checkpoint import CheckpointManager

    torch.manual_seed(0)
    model = Model(**QUICK_SHAPE) if quick else Model()
    opt = _optimizer(model)
    n = sum(p.numel() for p in model.parameters())
    print(f"(a) model: {n / 1e6:.1f}M params, state {3 * n * 4 / 2**30:.2f} GiB; gap {gap}s")
    stalls: dict[str, list[float]] = {"sync": [], "async": []}
    for mode in ("sync", "async"):
        mgr = CheckpointManager(root / f"ckpt-{mode}", keep_last=1, fsync=True)
        for step in range(1, repeats + 1):
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                     "trainer": {"step": step}}
            t0 = time.perf_counter()
            mgr.save(step, state, background=mode == "async")
            stalls[mode].append(time.perf_counter() - t0)
            with torch.no_grad():  # "training": the weights change while the write runs
                for p in model.parameters():
                    p.add_(1e-6)
            time.sleep(gap)
        mgr.wait()
        shutil.rmtree(root / f"ckpt-{mode}")
    return stalls


def worker(root: Path, repeats: int, quick: bool = False) -> None:
    """One rank of (b), started by torchrun."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from stoker.train import distributed as dist_utils
    from stoker.train.checkpoint import CheckpointManager

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = Model(**QUICK_SHAPE) if quick else Model()
    for b in model.blocks:
        fully_shard(b)
    fully_shard(model)
    opt = _optimizer(model)
    times: dict[str, list[float]] = {"sharded": [], "full": []}
    for i in range(repeats):
        for mode in ("sharded", "full"):
            mgr = CheckpointManager(root / f"{mode}-{i}", keep_last=1, fsync=True)
            dist.barrier()
            t0 = time.perf_counter()
            if mode == "sharded":
                msd, osd = dist_utils.sharded_state(model, opt)
                mgr.save_sharded(1, {"model": msd, "optimizer": osd, "trainer": {"step": 1}})
            else:
                state = {"model": dist_utils.full_model_state(model),
                         "optimizer": dist_utils.full_optim_state(model, opt),
                         "trainer": {"step": 1}}
                if rank == 0:
                    mgr.save(1, state)
                del state
            dist.barrier()
            times[mode].append(time.perf_counter() - t0)
            if rank == 0:
                shutil.rmtree(root / f"{mode}-{i}")
    if rank == 0:
        print("RESULT " + json.dumps(times), flush=True)
    dist.destroy_process_group()


def bench_sharded(root: Path, repeats: int, quick: bool = False) -> dict[str, list[float]]:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--standalone", __file__, "--worker",
         "--dir", str(root), "--repeats", str(repeats), *(["--quick"] if quick else [])],
        capture_output=True, text=True, env=env, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gap", type=float, default=8.0, help="seconds of 'training' between saves")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=("stall", "sharded"), default=None)
    _quick.add(ap)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.dir), args.repeats, args.quick)
        return
    if args.quick:
        args.repeats, args.gap = 1, 0.2
    torch.set_num_threads(1 if args.quick else min(2, os.cpu_count() or 1))
    print(_quick.machine(args.quick))
    root = Path(tempfile.mkdtemp(prefix="stoker-bench-scale-", dir=args.dir))
    print(f"writing to {root}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        if args.only in (None, "stall"):
            s = bench_stall(root, args.repeats, args.gap, args.quick)
            sync, asy = statistics.median(s["sync"]), statistics.median(s["async"])
            print(f"(a) stall per checkpoint, median: sync {sync * 1e3:.0f} ms, async "
                  f"{asy * 1e3:.0f} ms -> ratio {sync / asy:.1f}x less stall "
                  f"(all: sync {[round(x, 2) for x in s['sync']]}, "
                  f"async {[round(x, 2) for x in s['async']]})")
        if args.only in (None, "sharded"):
            t = bench_sharded(root, args.repeats, args.quick)
            sh, full = statistics.median(t["sharded"]), statistics.median(t["full"])
            print(f"(b) save at 2 processes, median: sharded {sh * 1e3:.0f} ms, full-state "
                  f"gather {full * 1e3:.0f} ms -> ratio {full / sh:.2f}x "
                  f"(all: sharded {[round(x, 2) for x in t['sharded']]}, "
                  f"full {[round(x, 2) for x in t['full']]})")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
