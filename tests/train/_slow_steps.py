"""A callback that slows every step down, so a run lasts long enough for a test to race it
(imported by ``_target_`` in subprocess runs; tests put this folder on PYTHONPATH)."""
from __future__ import annotations

import time

from stoker.train.callbacks import Callback


class SlowSteps(Callback):
    name = "SlowSteps"

    def __init__(self, seconds: float = 0.1) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer, step, metrics) -> None:  # noqa: ANN001
        time.sleep(self.seconds)
