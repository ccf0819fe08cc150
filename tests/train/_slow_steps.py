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


class Notifier(Callback):
    """Stands in for a callback that posts to a chat service with a token from the
    environment: it checks it got the real value (the run resolves ``${oc.env:...}``)."""

    name = "Notifier"

    def __init__(self, api_token: str = "", expect_env: str = "") -> None:
        import os

        if expect_env and api_token != os.environ.get(expect_env):
            raise ValueError(f"api_token is not the value of ${expect_env}")
        self.api_token = api_token


from stoker.train.metrics import Perplexity  # noqa: E402


class OwnPerplexity(Perplexity):
    """A metric from the user's own module: a model artifact's config then names a module
    outside stoker and torch, which `stoker eval art://...` must not import untrusted."""
