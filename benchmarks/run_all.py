"""Run every benchmark in this folder (``bench_*.py``), one process each, and print their output.

Each benchmark runs stoker and its peer or baseline in the same process run and prints the
ratio; figures worth keeping go to BENCHMARKS.md by hand, with the machine they ran on.
Pass names (e.g. ``cli_help``) to run a subset, and ``--quick`` to run each on tiny sizes
(``bench_X.py --quick``: the same code paths in seconds, what ``make test`` runs; see
``_quick.py``).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    quick = [a for a in argv if a == "--quick"]
    argv = [a for a in argv if a != "--quick"]
    here = Path(__file__).resolve().parent
    scripts = sorted(here.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(a in s.stem for a in argv)]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        rc = subprocess.call([sys.executable, str(script), *quick])
        if rc != 0:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
