"""A stoker process ends without a last garbage-collector pass over torch's objects
(stoker.cli.exiting), and still flushes what it leaves open and keeps its exit code."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = '''
import atexit
import gc
import sys

import stoker

report_file, held_file = sys.argv[1], sys.argv[2]


def report():
    with open(report_file, "w") as f:
        f.write(f"{gc.isenabled()} {gc.get_freeze_count()}\\n")


atexit.register(report)  # before stoker's own handler, so it runs after it
held = open(held_file, "w")  # never closed: module teardown flushes and closes it


class Keeper:
    """A callback-like object in a reference cycle, left as garbage: only the collector
    would free it (and flush its file)."""


@stoker.entrypoint
def work(text: str = "kept", code: int = 3):
    held.write(text)
    k = Keeper()
    k.me, k.f = k, open(held_file + ".cycle", "w")
    k.f.write(text)
    return code


if __name__ == "__main__":
    stoker.main(work, argv=[])
'''


def test_exit_freezes_the_collector_last_and_keeps_buffers_and_code(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    report, held = tmp_path / "report.txt", tmp_path / "held.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, str(script), str(report), str(held)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr  # the function's exit code, unchanged
    enabled, frozen = report.read_text().split()
    assert enabled == "False" and int(frozen) > 0  # every other exit handler ran first
    assert held.read_text() == "kept"  # buffered data of unclosed files still written,
    assert (tmp_path / "held.txt.cycle").read_text() == "kept"  # in a cycle too
