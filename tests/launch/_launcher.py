"""A process that launches experiments (the concurrency test runs several at once)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from stoker.launch.experiment import Experiment


def main() -> None:
    script, count, worker, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.01)
    ids = []
    for i in range(count):
        exp = Experiment(f"w{worker}", executor="detached")
        exp.add_script(script, [f"{worker}-{i}"], name="a")
        exp.add_script(script, [f"{worker}-{i}-b"], name="b")
        ids.append(exp.launch())
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
