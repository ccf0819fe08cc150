"""A callback that makes each step last a little, so a test can kill -9 a short run
mid-way (imported by `stoker train --import slow_steps` with this directory on PYTHONPATH)."""
from __future__ import annotations

import time
from typing import Any

from stoker import Callback


class SlowSteps(Callback):
    name = "SlowSteps"

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        time.sleep(self.seconds)
