"""`stoker --help` wall time vs a bare `python -c pass` in the same run, and proof that the
help path imports neither torch nor omegaconf/hydra. Peer: NeMo-Run `--help` (2.0-2.6 s on
this machine kind per DESIGN.md; measured beside when `nemo_run` is importable).

    python benchmarks/bench_config_cli_help.py [--quick]

``--quick``: 2 runs per command instead of 7.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402

RUNS = 7
PEER_FIGURE_S = 2.0  # NeMo-Run --help, lower end of DESIGN.md's 2.0-2.6 s


def wall(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    global RUNS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _quick.add(ap)
    quick = ap.parse_args().quick
    if quick:
        RUNS = 2
    print(_quick.machine(quick))
    exe = Path(sys.executable).with_name("stoker")
    stoker = [str(exe)] if exe.exists() else [sys.executable, "-m", "stoker"]
    bare = wall([sys.executable, "-c", "pass"])
    helptime = wall([*stoker, "--help"])
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.argv=['stoker','--help']\n"
         "from stoker.cli.app import main\n"
         "try:\n main()\nexcept SystemExit:\n pass\n"
         "print('HEAVY:' + ','.join(m for m in ('torch','omegaconf','hydra','numpy','rich') if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    heavy = probe.stdout.rsplit("HEAVY:", 1)[-1].strip()
    peer = None
    try:
        import nemo_run  # noqa: F401

        peer = wall([sys.executable, "-c", "import nemo_run"])
    except ImportError:
        pass
    print(f"python -c pass      : {bare * 1000:7.1f} ms (median of {RUNS})")
    print(f"stoker --help       : {helptime * 1000:7.1f} ms  ({(helptime - bare) * 1000:.1f} ms over bare python; goal <= 300 ms)")
    print(f"heavy modules loaded: {heavy or 'none'} (torch/omegaconf/hydra/numpy/rich)")
    if peer is not None:
        print(f"import nemo_run     : {peer * 1000:7.1f} ms (measured here); ratio {peer / helptime:.1f}x")
    else:
        _quick.skipped("NeMo-Run measured beside", "nemo_run is not importable here")
        print(f"NeMo-Run --help     : ~{PEER_FIGURE_S * 1000:.0f} ms (DESIGN.md figure; nemo_run not installed)")
        print(f"ratio               : {PEER_FIGURE_S / helptime:.1f}x faster (goal >= 5x)")
    if shutil.which("hyperfine"):
        pass


if __name__ == "__main__":
    main()
