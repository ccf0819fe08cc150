"""Every benchmark still runs: ``python benchmarks/bench_X.py --quick`` for each ``bench_*.py``.

A benchmark is not a test (no timing is asserted here, DESIGN.md section 4), but one that no
longer runs is a bug nobody sees until the next round of figures (``bench_train_overhead.py``
died on a ``NameError`` for weeks). ``--quick`` runs the same code paths on tiny sizes in
seconds (benchmarks/_quick.py); the scripts are found by glob, so a new benchmark is covered
without touching this file. Each must exit 0 and print, on stdout:

- a ``machine: CPU ...`` line (CPU model, cores, vector ISA, load: what its figures ran on);
- at least one ratio line (``ratio ... 1.23x``, :data:`_quick.RATIO`): stoker beside its
  peer or baseline in the same run. A peer or engine absent here is a ``skipped:`` line,
  never a failure.

Most of a quick run is starting Python and importing torch, one core each, so the selected
benchmarks run ``STOKER_BENCH_JOBS`` at a time (default: 2, or 1 on a 1-core machine) as soon
as the first of these tests asks; each test then checks its own. Their figures mean nothing.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))
TIMEOUT_S = 300  # a quick run takes seconds; this only stops a hung one (launch ones spawn jobs)
JOBS = int(os.environ.get("STOKER_BENCH_JOBS", "0")) or min(2, os.cpu_count() or 1)

pytestmark = pytest.mark.integration


def _quick():
    spec = importlib.util.spec_from_file_location("bench_quick", BENCH / "_quick.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python *argv`` in ``cwd`` with this checkout's sources first and a private home."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"),
                                                    env.get("PYTHONPATH")) if p)
    env["STOKER_HOME"] = str(cwd / "stoker-home")
    env.setdefault("PYTHONHASHSEED", "0")
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)


def test_benchmarks_are_found() -> None:
    assert len(SCRIPTS) >= 10, f"benchmarks/bench_*.py: only {[p.name for p in SCRIPTS]}"


@pytest.fixture(scope="module")
def quick_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[dict[Path, Future]]:
    """``bench_X.py --quick`` for each selected benchmark, JOBS at a time, in test order."""
    selected = [item.callspec.params["script"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")
                and "script" in item.callspec.params]
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        futures = {s: pool.submit(_run, [str(s), "--quick"], tmp_path_factory.mktemp(s.stem))
                   for s in selected}
        yield futures
        for f in futures.values():
            f.cancel()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_quick_mode_runs_and_prints_a_ratio(script: Path, quick_runs: dict[Path, Future]
                                            ) -> None:
    try:
        proc = quick_runs[script].result()
    except subprocess.TimeoutExpired as e:
        tail = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
        pytest.fail(f"{script.name} --quick did not finish in {TIMEOUT_S} s; stdout tail:\n"
                    f"{(tail or '')[-4000:]}")
    out = f"--- stdout:\n{proc.stdout[-4000:]}\n--- stderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{script.name} --quick exited {proc.returncode}\n{out}"
    lines = proc.stdout.splitlines()
    assert any(line.startswith("machine: CPU ") for line in lines), (
        f"{script.name} --quick printed no 'machine: CPU ...' line (_quick.machine())\n{out}")
    ratio = _quick().RATIO
    assert any(ratio.search(line) for line in lines), (
        f"{script.name} --quick printed no ratio line matching {ratio.pattern!r} (stoker "
        f"beside its peer or baseline, e.g. 'ratio 1.23x')\n{out}")


def test_run_all_passes_quick_through(tmp_path: Path) -> None:
    proc = _run([str(BENCH / "run_all.py"), "--quick", "cli_help"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "=== bench_config_cli_help ===" in proc.stdout
    assert "--quick: tiny sizes" in proc.stdout, proc.stdout[-3000:]
