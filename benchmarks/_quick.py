"""``--quick``: every ``bench_*.py`` runs its same code paths on tiny sizes, in seconds.

``make test`` runs ``python benchmarks/bench_X.py --quick`` for every benchmark
(tests/test_benchmarks_quick.py), so a benchmark that stops working fails CI. Quick figures
measure nothing worth keeping: never record them in BENCHMARKS.md.

The conventions the test enforces, quick or not:

- exit 0; a peer or engine that is absent here (NeMo-Run's benchmark-only virtualenv, a
  Slurm cluster) is never a failure: stoker's side still runs and a ``skipped: ...`` line
  says what was left out and why;
- at least one line matching :data:`RATIO` -- the word ``ratio`` and then a figure ending in
  ``x`` (``ratio 1.23x``, ``ratio stoker / HF = 0.94x``): stoker beside its peer or
  baseline, measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys

FLAG = "--quick"
HELP = ("tiny sizes, a few seconds: the same code paths, for the test suite "
        "(figures not worth recording)")
RATIO = re.compile(r"\bratio\b.*?\d(?:\.\d+)?x")


def add(ap: argparse.ArgumentParser) -> None:
    """Add ``--quick`` to a benchmark's argument parser."""
    ap.add_argument(FLAG, action="store_true", help=HELP)


def take(argv: list[str] | None = None) -> bool:
    """Remove ``--quick`` from ``argv`` (default ``sys.argv``); True if it was there.

    For the scripts that read ``sys.argv`` positionally (a count, a worker's arguments).
    """
    argv = sys.argv if argv is None else argv
    found = FLAG in argv
    while FLAG in argv:
        argv.remove(FLAG)
    return found


def skipped(what: str, why: object) -> None:
    """Say that part of a benchmark did not run here, and why (never a failure)."""
    print(f"skipped: {what}: {why}", flush=True)


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _cpuinfo(key: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine(quick: bool = False) -> str:
    """One line naming the machine the figures come from: CPU model, cores, the vector ISA
    torch dispatches to (AVX2 / AVX512 change the figures), load average.

    The ISA is torch's own ``get_cpu_capability()`` where the benchmark has imported torch
    (call this after the import); a benchmark that never imports torch in its own process
    (its children do, or nothing does) gets the CPU's flags instead, sparing the import.
    """
    parts = [f"CPU {cpu_model()}", f"{os.cpu_count()} cores"]
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"torch {torch.__version__} CPU capability "
                     f"{torch.backends.cpu.get_cpu_capability()}")
    else:
        flags = set(_cpuinfo("flags").split())
        isa = next((n for f, n in (("avx512f", "AVX512"), ("avx2", "AVX2")) if f in flags),
                   "no AVX2")
        parts.append(f"CPU flags {isa}")
    parts.append(f"load {os.getloadavg()[0]:.2f}")
    line = "machine: " + ", ".join(parts)
    return line + ("; --quick: tiny sizes, figures not worth recording" if quick else "")
