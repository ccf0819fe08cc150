"""`--dryrun` of a ~300-node recipe, beyond the interpreter's and torch's own import time,
and in-process config resolution (compose + 3 overrides + validate + build) vs Hydra's
compose + instantiate on the same YAML, in the same run.

    python benchmarks/bench_config_dryrun.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 5


def recipe_text(n_blocks: int = 24) -> str:
    lines = ["# python benchmarks/bench_config_dryrun.py", "# A synthetic recipe with ~300 nodes.",
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


def wall(code: str) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def count_nodes(cfg) -> int:
    from stoker.cli.front_door import flatten
    from stoker.config.export import to_container

    def walk(x):
        if isinstance(x, dict):
            return 1 + sum(walk(v) for v in x.values())
        if isinstance(x, list):
            return 1 + sum(walk(v) for v in x)
        return 1
    del flatten
    return walk(to_container(cfg, resolve=False))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="stoker-bench-"))
    recipe = tmp / "config.yaml"
    recipe.write_text(recipe_text())
    overrides = ["optim.lr=3e-4", "dim=32", "trainer.max_steps=200"]

    bare = wall("pass")
    torch_t = wall("import torch")
    dry = wall("from stoker.cli.front_door import run_front_door\n"
               "from stoker.config import compose\n"
               f"run_front_door(compose({str(recipe)!r}, {overrides!r}), dryrun=True)")

    # in-process resolution, imports warm
    import torch  # noqa: F401
    from hydra import compose as hcompose, initialize_config_dir
    from hydra.utils import instantiate

    from stoker.config import build, compose

    cfg = compose(recipe, overrides)
    nodes = count_nodes(cfg)

    def stoker_once():
        c = compose(recipe, overrides)
        build(c)  # validates the whole tree first, then builds

    def hydra_once():
        with initialize_config_dir(config_dir=str(tmp), version_base=None):
            c = hcompose(config_name="config", overrides=overrides)
        instantiate(c)

    def median_ms(fn, n=15):
        fn()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts) * 1000

    s_ms, h_ms = median_ms(stoker_once), median_ms(hydra_once)
    beyond = dry - torch_t
    print(f"recipe nodes            : {nodes}")
    print(f"python -c pass          : {bare * 1000:7.1f} ms")
    print(f"python -c 'import torch': {torch_t * 1000:7.1f} ms")
    print(f"--dryrun (table)        : {dry * 1000:7.1f} ms  -> {beyond * 1000:.1f} ms beyond interpreter+torch (goal <= 300 ms)")
    print(f"stoker compose+validate+build : {s_ms:6.1f} ms (goal <= 50 ms)")
    print(f"hydra compose+instantiate     : {h_ms:6.1f} ms (same YAML, same overrides)")
    print(f"ratio hydra/stoker            : {h_ms / s_ms:.2f}x")


if __name__ == "__main__":
    main()
