"""DDP on CPU through ``executor=torchrun``: 2 processes vs 1 at the same global batch.

    python benchmarks/bench_launch_ddp.py [--runs 2] [--steps 40] [--batch 32]

``stoker train gpt-char`` (the recipe's model: 4 layers, dim 128, seq 128; data: a ~400 KB
char corpus made here) is launched through the real CLI with ``executor=torchrun`` and
followed to its end, in these settings, interleaved run by run:

  1 process,  batch B,   2 threads   (both cores to one process: the usual single run)
  2 processes, batch B/2 each, 1 thread each (DDP over gloo; the same global batch B)
  1 process,  batch B,   1 thread    (one core: what each DDP rank has to itself)

Threads are set with ``trainer.num_threads`` (one per core: 2 cores in all, never
oversubscribed). Figures: median ``tokens_per_s`` of the steps after the first 5 (the
Throughput callback: global tokens of the step over rank 0's step time), and the job's
wall time from command to exit (start-up of every process, rendezvous included).

``--quick``: one run of the first two settings, gpt-char shrunk to 1 layer of width 32, seq 32,
global batch 4, 4 steps (the first not counted), a ~40 KB corpus.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402
from _launch_common import load, med, stoker_cmd, stoker_env  # noqa: E402

WARMUP = 5
SHAPE: list[str] = []  # --quick: the model shrunk (overrides)


def make_data(root: Path, lines: int = 4000) -> Path:
    from _launch_common import corpus_text
    from stoker.data.prepare import prepare

    root.mkdir(parents=True)
    (root / "corpus.txt").write_text(corpus_text(lines), encoding="utf-8")
    return prepare([str(root / "corpus.txt")], root / "char", type="char",
                   split_ratios=(0.95, 0.05, 0.0), workers=1)


def train(work: Path, data: Path, name: str, nproc: int, batch: int, threads: int, steps: int,
          env: dict[str, str]) -> tuple[float, float]:
    """(median tokens/s after warm-up, wall seconds command to exit)."""
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    args = [*stoker_cmd(), "train", "gpt-char", f"data.path={data}", f"output_dir={out}",
            f"data.batch_size={batch}", f"trainer.num_threads={threads}",
            f"trainer.max_steps={steps}", "trainer.log_every=1", "trainer.eval_every=100000",
            "checkpoint.every_steps=100000", "loggers=[jsonl]", "~callbacks.samples",
            "register_artifact=false", "resume=never", *SHAPE,
            "executor=torchrun", f"executor.nproc_per_node={nproc}", "--yes"]
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=work / "project", env=env, capture_output=True, text=True,
                          timeout=900)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-3000:]}")
    rates = [json.loads(line).get("tokens_per_s") for line in
             (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r for r in rates if r][WARMUP:]
    if not rates:
        raise RuntimeError(f"{name}: no tokens_per_s in {out / 'metrics.jsonl'}")
    return med(rates), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32, help="global batch (windows of 128)")
    ap.add_argument("--no-single-thread", action="store_true",
                    help="skip the 1-process 1-thread setting")
    _quick.add(ap)
    args = ap.parse_args()
    global WARMUP
    if args.quick:
        args.runs, args.steps, args.batch, args.no_single_thread = 1, 4, 4, True
        WARMUP = 1
        SHAPE.extend(["model.n_layers=1", "model.dim=32", "model.n_heads=2", "model.n_kv_heads=1",
                      "data.seq_len=32"])
    if args.batch % 2:
        ap.error("--batch must be even (split over 2 processes)")
    import torch

    print(_quick.machine(args.quick))
    shape = "1x32, seq 32" if args.quick else "4x128, seq 128"
    print(f"start: {load()}, {os.cpu_count()} CPUs, torch {torch.__version__}; gpt-char {shape}, "
          f"global batch {args.batch}, {args.steps} steps (first {WARMUP} not counted)")
    work = Path(tempfile.mkdtemp(prefix="stoker-bench-ddp-"))
    try:
        (work / "project").mkdir()
        data = make_data(work / "data", 400 if args.quick else 4000)
        env = stoker_env(work / "home")
        env.pop("OMP_NUM_THREADS", None)  # trainer.num_threads sets the threads
        settings = [("1 process x 2 threads", 1, args.batch, 2),
                    ("2 processes x 1 thread (DDP)", 2, args.batch // 2, 1)]
        if not args.no_single_thread:
            settings.append(("1 process x 1 thread", 1, args.batch, 1))
        res: dict[str, list[tuple[float, float]]] = {s[0]: [] for s in settings}
        for i in range(args.runs):
            for label, nproc, batch, threads in settings:
                r = train(work, data, f"r{i}-{nproc}-{threads}", nproc, batch, threads,
                          args.steps, env)
                res[label].append(r)
                print(f"  [{i + 1}/{args.runs}] {label:30s} batch {batch:3d}/process: "
                      f"{r[0]:8.0f} tok/s, job {r[1]:5.1f} s  ({load()})", flush=True)
        print()
        tok = {k: med([r[0] for r in v]) for k, v in res.items()}
        for k, v in res.items():
            print(f"{k:30s}: {tok[k]:8.0f} tok/s (median of {len(v)}; "
                  f"{', '.join(f'{r[0]:.0f}' for r in v)}), job wall {med([r[1] for r in v]):.1f} s")
        one, ddp = tok["1 process x 2 threads"], tok["2 processes x 1 thread (DDP)"]
        print(f"ratio 2 processes / 1 process (2 threads), same global batch: {ddp / one:.2f}x")
        if "1 process x 1 thread" in tok:
            print(f"ratio 2 processes / 1 process (1 thread): {ddp / tok['1 process x 1 thread']:.2f}x"
                  " (DDP scaling per core)")
        print(f"end: {load()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
