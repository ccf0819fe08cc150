"""``STOKER_TEST_KILL_AT=NAME[:N]``: SIGKILL this process the N-th time (default: the first)
it passes the named point.

Why: the job store must read true whatever moment a launcher dies at, and a test that
races a timer against a launch proves nothing reliably. The launcher calls
:func:`kill_point` at each step that changes the store (``launch-created``,
``launch-task-recorded``, ``launch-committed``, ``submitted``, ``driver-started``), so a
test kills it exactly there. Unset (always, outside tests) it costs one dict lookup.
"""
from __future__ import annotations

import os
import signal

__all__ = ["ENV", "kill_point"]

ENV = "STOKER_TEST_KILL_AT"
_passed: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Die here (SIGKILL, nothing cleaned up) when :data:`ENV` names this point."""
    want = os.environ.get(ENV)
    if not want:
        return
    target, _, count = want.partition(":")
    if target != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
