"""``python -m stoker.launch.wrapper JOB_DIR [--own-session] -- ARGV...``: run ARGV, record
its exit status.

The launcher starts this tiny parent (stdlib only, no torch) instead of the job itself so
that the exit code survives the launcher: whoever asks later reads ``JOB_DIR/exit.json``,
written atomically once the job ends. SIGTERM and SIGUSR1 (and SIGINT in its own session)
are forwarded to the job, so ``stoker exp cancel`` lets the trainer save a checkpoint.
"""
from __future__ import annotations

import subprocess
import sys
import time

# Nothing else at module level: the job starts before this process imports anything more
# (json, signal, pathlib and stoker.atomic come after it, off the job's start-up path).
EXIT_FILE = "exit.json"


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") < 1:
        sys.stderr.write("usage: python -m stoker.launch.wrapper JOB_DIR [--own-session] -- ARGV...\n")
        return 2
    sep = argv.index("--")
    job_dir = argv[0]
    own_session = "--own-session" in argv[1:sep]
    cmd = argv[sep + 1:]
    started = time.time()
    try:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    except OSError as e:
        sys.stderr.write(f"stoker: cannot start {cmd[0]}: {e}\n")
        _record(job_dir, 127, started)
        return 127
    import signal

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    def on_sigint(signum: int, frame: object) -> None:
        # Same session: Ctrl-C already reached the job through the terminal's process group.
        if own_session:
            forward(signum, frame)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, on_sigint)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, forward)
    rc = child.wait()
    code = rc if rc >= 0 else 128 - rc  # killed by signal N: the shell's 128 + N
    _record(job_dir, code, started)
    return code


def _record(job_dir: str, code: int, started: float) -> None:
    import json
    from pathlib import Path

    from stoker.atomic import atomic_write_text

    atomic_write_text(Path(job_dir) / EXIT_FILE, json.dumps(
        {"exit_code": code, "started": started, "ended": time.time()}) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
