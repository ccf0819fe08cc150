"""Shared by the launch benchmarks (``bench_launch_*.py``): the real Slurm cluster of the
tests, a tiny char dataset, the stoker command line, and the NeMo-Run peer's virtualenv.

The Slurm cluster is the one ``tests/_shared/engines.py`` starts for the launch tests (a
private munged + slurmctld + slurmd under a temp dir, stopped afterwards); the benchmarks
call its fixture function directly, so the figures are taken on exactly what the tests use.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEER_VENV = REPO / "benchmarks" / "peers" / ".venv-nemo-run"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_SETUP = "bash benchmarks/peers/setup_nemo_run.sh"

if str(REPO) not in sys.path:  # tests._shared.engines
    sys.path.insert(0, str(REPO))


def load() -> str:
    """The 1-minute load average, to print beside every figure (the machine is shared)."""
    return f"load {os.getloadavg()[0]:.2f}"


def stoker_cmd() -> list[str]:
    """The ``stoker`` console script of this interpreter's environment (what a user types)."""
    exe = Path(sys.executable).with_name("stoker")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "stoker"]


def stoker_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with stoker's sources first and a private STOKER_HOME."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).strip(
        os.pathsep)
    env["STOKER_HOME"] = str(home)
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra)
    return env


def peer_version() -> str | None:
    """``nemo-run X (torch: none|version)`` from the benchmark venv, or None when absent."""
    if not PEER_PYTHON.exists():
        return None
    import subprocess

    out = subprocess.run([str(PEER_PYTHON), "-c",
                          "import importlib.metadata as m\n"
                          "def v(n):\n"
                          "    try: return m.version(n)\n"
                          "    except m.PackageNotFoundError: return 'not installed'\n"
                          "print(f\"nemo-run {v('nemo-run')}, fiddle {v('fiddle')}, torchx "
                          "{v('torchx')}, torch {v('torch')}\")"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def corpus_text(lines: int = 400) -> str:
    """About 40 KB of deterministic Python-like text (the trainer tests' tiny corpus)."""
    names = ["alpha", "beta", "gamma", "delta", "value", "count", "items", "total", "index"]
    out = []
    for i in range(lines):
        a, b = names[i % len(names)], names[(i * 7 + 3) % len(names)]
        out += [f"def {a}_{i}({b}, n={i % 13}):", f"    \"\"\"Return the {a} of {b}.\"\"\"",
                f"    if {b} is None:", f"        return {i}", "    for k in range(n):",
                f"        {b} = {b} + k * {i % 5}", f"    return {b} - {i % 7}", ""]
    return "\n".join(out)


def tiny_char_data(root: Path) -> Path:
    """A prepared char dataset of :func:`corpus_text` under ``root``."""
    from stoker.data.prepare import prepare

    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.txt").write_text(corpus_text(), encoding="utf-8")
    return prepare([str(root / "corpus.txt")], root / "char", type="char",
                   split_ratios=(0.9, 0.1, 0.0), workers=1)


def tiny_overrides(data: Path, out: Path, *extra: str) -> list[str]:
    """gpt-char shrunk to a few seconds on CPU (as in the trainer tests)."""
    return [f"data.path={data}", f"output_dir={out}", "model.n_layers=2", "model.dim=32",
            "model.n_heads=2", "model.n_kv_heads=1", "data.seq_len=32", "data.batch_size=8",
            "trainer.eval_every=1000", "trainer.log_every=1", "checkpoint.every_steps=1000",
            "loggers=[jsonl]", "~callbacks.samples", "schedule.warmup_steps=2",
            "register_artifact=false", "trainer.num_threads=1", *extra]


def wait_for(pred: Any, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(poll)
    return bool(pred())


def read_marker(path: Path, timeout: float) -> float | None:
    """The wall-clock time a job wrote into ``path`` (None if it never did)."""
    def ready() -> bool:
        try:
            return path.read_text().endswith("\n")
        except FileNotFoundError:
            return False

    return float(path.read_text()) if wait_for(ready, timeout) else None


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
    """``median (min-max, n=N)`` in seconds."""
    if not xs:
        return "n/a"
    return f"{med(xs):6.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


@contextlib.contextmanager
def slurm_cluster() -> Iterator[Any]:
    """The tests' private single-node Slurm cluster, or a RuntimeError saying why not.

    ``tests/_shared/engines.py`` reports an absent engine through pytest's skip/fail; they
    are turned into a RuntimeError with the same reason here.
    """
    from tests._shared import engines

    fixture = engines.slurm_cluster
    fn = getattr(fixture, "__wrapped__", None) or fixture.__pytest_wrapped__.obj  # type: ignore[attr-defined]
    gen = fn()
    try:
        cluster = next(gen)
    except BaseException as e:  # pytest's Skipped/Failed are BaseExceptions
        if isinstance(e, KeyboardInterrupt):
            raise
        raise RuntimeError(f"no Slurm cluster: {e}") from None
    try:
        yield cluster
    finally:
        with contextlib.suppress(StopIteration):
            next(gen)
