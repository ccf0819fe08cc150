"""Resolving ``art://name:latest``: cost with 10 vs 10,000 versions on a local registry.

Baseline in the same run: the listing approach (list every version record, take the max),
which is what a registry without an O(1) ``latest`` does. The 10,000-version registry is
built by publishing 10 real versions and cloning their record for the rest (the on-disk
state is exactly what 10,000 publishes leave; publishing them one by one only costs time).

Run: .venv/bin/python benchmarks/bench_artifacts_latest.py [--quick]
(``--quick``: 10 vs 200 versions, fewer repeats.)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stoker import Artifact, Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


def build(root: Path, n: int) -> Registry:
    reg = Registry(root)
    src = root.parent / "src.txt"
    src.write_text("x")
    for _ in range(min(n, 10)):
        Artifact(path=src).save("bench", registry=reg)
    vdir = root / "artifacts" / "bench" / "versions"
    rec = json.loads((vdir / "v10.json").read_text()) if n >= 10 else None
    for v in range(11, n + 1):
        rec["version"] = v
        rec["artifact"]["version"] = v
        (vdir / f"v{v}.json").write_text(json.dumps(rec))
    (root / "artifacts" / "bench" / "LATEST").write_text(str(n))
    return reg


def timeit(fn, repeat: int = 200) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def listing_latest(root: Path) -> int:
    vdir = root / "artifacts" / "bench" / "versions"
    top = max(int(p[1:-5]) for p in os.listdir(vdir))
    json.loads((vdir / f"v{top}.json").read_text())
    return top


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _quick.add(ap)
    args = ap.parse_args()
    print(_quick.machine(args.quick))
    big = 200 if args.quick else 10_000
    repeat = 20 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in (10, big):
            root = Path(tmp) / f"reg{n}"
            root.mkdir()
            reg = build(root, n)
            assert Artifact.from_uri("bench:latest", registry=reg).version == n
            ms = timeit(lambda: Artifact.from_uri("bench:latest", registry=reg), repeat=repeat)
            base = timeit(lambda: listing_latest(root), repeat=max(repeat // 4, 5))
            rows.append((n, ms, base))
        print(f"{'versions':>9} {'stoker from_uri(latest) ms':>27} {'listing baseline ms':>20} {'ratio':>7}")
        for n, ms, base in rows:
            print(f"{n:>9} {ms:>27.3f} {base:>20.3f} {base / ms:>6.1f}x")
        print(f"ratio stoker {big:,} vs 10 versions: {rows[1][1] / rows[0][1]:.2f}x the cost")


if __name__ == "__main__":
    main()
