"""`--dryrun` of a ~400-node recipe beyond the interpreter's and torch's own import time, the
real `stoker train gpt-char --dryrun`, and in-process config resolution (compose + 3
overrides + validate + build) vs Hydra's compose + instantiate on the same YAML, same run.

    python benchmarks/bench_config_dryrun.py [--quick]

Each command runs in a fresh interpreter; the figure is the median of RUNS, as wall time and
as CPU time (user+sys of the child, from getrusage), because on a shared machine wall time
mostly measures the other users. stoker's own modules are loaded from bytecode, as in an
installed package (a private PYTHONPYCACHEPREFIX; PYTHONDONTWRITEBYTECODE is dropped for
the children), with one warm-up run per command so that compilation is not timed.
``--quick``: one run per command, no warm-up and the environment's own bytecode (a private
cache would compile torch first), 2 in-process repetitions.
"""
from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402

RUNS = 7
WARMUP = True
OVERRIDES = ["optim.lr=3e-4", "dim=32", "trainer.max_steps=200"]


def recipe_text(n_blocks: int = 24) -> str:
    lines = ["# python benchmarks/bench_config_dryrun.py", "# A synthetic recipe with ~400 nodes.",
             "seed: 0", "dim: 16", "trainer:", "  max_steps: 100", "  log_every: 10",
             "  out_dir: outputs/bench", "optim:", "  _target_: torch.optim.AdamW",
             "  _partial_: true", "  lr: 1.0e-3", "  weight_decay: 0.01", "blocks:"]
    for i in range(n_blocks):
        lines += [f"  b{i}:", "    linear:", "      _target_: torch.nn.Linear",
                  "      in_features: ${dim}", "      out_features: ${dim}", "      bias: true",
                  "    norm:", "      _target_: torch.nn.LayerNorm",
                  "      normalized_shape: ${dim}", "      eps: 1.0e-5",
                  "    meta:", f"      name: block{i}", "      dropout: 0.1", "      tags: [a, b]"]
    return "\n".join(lines) + "\n"


def child_env(pycache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.setdefault("COLUMNS", "100")
    return env


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Median (wall s, cpu s) of a command over RUNS fresh processes (after one warm-up)."""
    if WARMUP:
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    walls, cpus = [], []
    for _ in range(RUNS):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
        walls.append(time.perf_counter() - t)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def count_nodes(cfg) -> int:
    from stoker.config.export import to_container

    def walk(x):
        if isinstance(x, dict):
            return 1 + sum(walk(v) for v in x.values())
        if isinstance(x, list):
            return 1 + sum(walk(v) for v in x)
        return 1
    return walk(to_container(cfg, resolve=False))


def main() -> None:
    global RUNS, WARMUP
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _quick.add(ap)
    quick = ap.parse_args().quick
    if quick:
        RUNS, WARMUP = 1, False
    tmp = Path(tempfile.mkdtemp(prefix="stoker-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # make test runs this each time
    recipe = tmp / "config.yaml"
    recipe.write_text(recipe_text())
    env = child_env(None if quick else tmp / "pycache")
    py = sys.executable
    stoker_bin = str(Path(py).with_name("stoker"))
    dry_code = ("import torch\n"
                "from stoker.cli.front_door import run_front_door\n"
                "from stoker.config import compose\n"
                f"run_front_door(compose({str(recipe)!r}, {OVERRIDES!r}), dryrun=True)")
    load = os.getloadavg()[0]
    bare = measure([py, "-c", "pass"], env)
    torch_t = measure([py, "-c", "import torch"], env)
    dry = measure([py, "-c", dry_code], env)
    train_dry = measure([stoker_bin, "train", "gpt-char", "--dryrun"], env)

    # in-process resolution, imports warm
    import torch  # noqa: F401
    from hydra import compose as hcompose, initialize_config_dir
    from hydra.utils import instantiate

    from stoker.config import build, compose

    nodes = count_nodes(compose(recipe, OVERRIDES))

    def stoker_once():
        build(compose(recipe, OVERRIDES))  # build validates the whole tree first

    def hydra_once():
        with initialize_config_dir(config_dir=str(tmp), version_base=None):
            c = hcompose(config_name="config", overrides=OVERRIDES)
        instantiate(c)

    def median_ms(fn, n=2 if quick else 15):
        fn()
        walls, cpus = [], []
        for _ in range(n):
            c, t = time.process_time(), time.perf_counter()
            fn()
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        return statistics.median(walls) * 1000, statistics.median(cpus) * 1000

    (s_w, s_c), (h_w, h_c) = median_ms(stoker_once), median_ms(hydra_once)
    load = max(load, os.getloadavg()[0])

    def row(name, t, base=None, goal=""):
        extra = ""
        if base is not None:
            extra = (f"  -> beyond torch: {(t[0] - base[0]) * 1000:6.0f} ms wall, "
                     f"{(t[1] - base[1]) * 1000:6.0f} ms cpu{goal}")
        print(f"{name:34s} wall {t[0] * 1000:7.0f} ms  cpu {t[1] * 1000:7.0f} ms{extra}")

    print(_quick.machine(quick))
    print(f"load average (1 min, max seen): {load:.1f} on {os.cpu_count()} cores; "
          f"median of {RUNS} fresh processes")
    print(f"recipe nodes: {nodes}")
    row("python -c pass", bare)
    row("python -c 'import torch'", torch_t)
    row(f"--dryrun table, {nodes} nodes", dry, torch_t, " (goal <= 300 ms)")
    row("stoker train gpt-char --dryrun", train_dry, torch_t)
    print(f"stoker compose+3 overrides+validate+build : {s_w:6.1f} ms wall, {s_c:6.1f} ms cpu (goal <= 50 ms)")
    print(f"hydra compose+3 overrides+instantiate     : {h_w:6.1f} ms wall, {h_c:6.1f} ms cpu (same YAML)")
    print(f"ratio hydra/stoker                        : {h_w / s_w:.2f}x wall, {h_c / s_c:.2f}x cpu")


if __name__ == "__main__":
    main()
