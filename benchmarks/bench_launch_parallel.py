"""Two trainings on one machine: in parallel (sharing the cores) vs one after the other.

Baseline, same run: the same two tasks run in sequence (mode="sequential"), each with the
whole machine (torch's default: one intra-op thread per core). stoker: the two in parallel
(mode="parallel"); the launcher gives each ``cores / 2`` threads (``trainer.num_threads``,
recorded in the run's config, plus ``OMP_NUM_THREADS``). Goal: parallel within 1.2x of the
sequential time. ``--same-threads`` adds the pair in sequence with the shared thread count each (the
parallel run against the same per-task work). ``--unshared`` adds what happened before
stoker shared the cores: the
two in parallel with all cores' worth of threads each (spinning OpenMP threads fighting
over the same cores; ~10x slower steps seen with ``make demo`` beside another training).

Each task is a real ``python -m stoker train`` child process (the local executor), so the
times include starting Python and importing torch. Prints the load average before and
after: on a shared machine the figure drifts with what else runs.

    python benchmarks/bench_launch_parallel.py [--steps 120] [--unshared] [--same-threads]

``--quick``: 3 steps of gpt-char shrunk to 1 layer of width 32, seq 32, batch 4.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "train"))
sys.path.insert(0, str(HERE))
import _quick  # noqa: E402

QUICK = False


def make_data(root: Path) -> Path:
    from train_helpers import tiny_corpus_text

    from stoker.data.prepare import prepare

    (root / "c.txt").write_text(tiny_corpus_text() * 4)
    return prepare([str(root / "c.txt")], root / "char", type="char",
                   split_ratios=(0.95, 0.05, 0.0), workers=1)


def overrides(data: Path, out: Path, steps: int) -> list[str]:
    """gpt-char shrunk so one task takes a few tens of seconds on 2 cores (``--quick``: less)."""
    shape = (["model.n_layers=1", "model.dim=32", "model.n_heads=2", "model.n_kv_heads=1",
              "data.seq_len=32", "data.batch_size=4", "trainer.log_every=1"] if QUICK else
             ["model.n_layers=2", "model.dim=96", "model.n_heads=4", "model.n_kv_heads=2",
              "data.seq_len=64", "data.batch_size=16", "trainer.log_every=10"])
    return [f"data.path={data}", f"output_dir={out}", f"trainer.max_steps={steps}", *shape,
            "trainer.eval_every=null", "checkpoint.every_steps=null", "loggers=[jsonl]",
            "~callbacks.samples", "register_artifact=false"]


def run_pair(root: Path, data: Path, steps: int, mode: str, threads: int | None) -> float:
    """Wall time of an experiment of two trainings run in ``mode``."""
    from stoker.launch.experiment import Experiment
    from stoker.launch.store import JobStore

    tag = f"{mode}-{threads or 'auto'}"
    root.mkdir(parents=True, exist_ok=True)
    exp = Experiment(f"bench-{tag}", executor="local", store=JobStore(root / "store"), cwd=root)
    for i in range(2):
        extra = [f"trainer.num_threads={threads}"] if threads else []
        exp.add_train("gpt-char", [*overrides(data, root / tag / str(i), steps), *extra,
                                   f"seed={i}"], name=f"t{i}")
    t = time.perf_counter()
    exp.run(mode=mode)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--unshared", action="store_true",
                    help="also run the two in parallel with all cores' threads each")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the runs interleaved and report medians (a busy machine)")
    ap.add_argument("--same-threads", action="store_true",
                    help="also run the two in sequence with the shared thread count each")
    _quick.add(ap)
    args = ap.parse_args()
    global QUICK
    QUICK = args.quick
    if args.quick:
        args.steps = 3
    print(_quick.machine(args.quick))
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # every task picks its own count
        os.environ.pop(k, None)
    from stoker.launch.cores import local_cpus

    cores = local_cpus()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["STOKER_HOME"] = str(root / "home")
        data = make_data(root)
        runs: dict[str, list[float]] = {"seq": [], "par": [], "unshared": [], "same": []}
        for r in range(args.rounds):
            runs["seq"].append(run_pair(root / f"r{r}", data, args.steps, "sequential", None))
            runs["par"].append(run_pair(root / f"r{r}", data, args.steps, "parallel", None))
            if args.unshared:
                runs["unshared"].append(run_pair(root / f"r{r}", data, args.steps, "parallel",
                                                 cores))
            if args.same_threads:
                runs["same"].append(run_pair(root / f"r{r}", data, args.steps, "sequential",
                                             max(1, cores // 2)))
    seq, par = statistics.median(runs["seq"]), statistics.median(runs["par"])
    unshared = statistics.median(runs["unshared"]) if runs["unshared"] else None
    same = statistics.median(runs["same"]) if runs["same"] else None
    load1 = os.getloadavg()
    print(f"cores: {cores}; two gpt-char tasks of {args.steps} steps each (python -m stoker "
          f"train child processes); median of {args.rounds} round(s)")
    print(f"sequential (each all {cores} threads)     : {seq:7.1f} s")
    print(f"parallel, cores shared ({max(1, cores // 2)} thread(s) each): {par:7.1f} s  "
          f"ratio {par / seq:.2f}x of sequential (goal <= 1.2x)")
    if unshared is not None:
        print(f"parallel, unshared ({cores} threads each)   : {unshared:7.1f} s  "
              f"ratio {unshared / seq:.2f}x of sequential (before stoker shared the cores)")
    if same is not None:
        print(f"sequential ({max(1, cores // 2)} thread(s) each)       : {same:7.1f} s  "
              f"parallel is {par / same:.2f}x of this")
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
