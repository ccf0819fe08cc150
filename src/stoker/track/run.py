"""The run scope, seen from the tracking side.

Which artifacts a run used, and the :class:`~stoker.artifacts.types.TrackingInfo` of what it
publishes, are recorded by the artifacts layer (:mod:`stoker.artifacts.provenance`), which
cannot import this package. These are the same objects under the names tracking code has
always used (``from stoker.track.run import run_scope``).
"""
from __future__ import annotations

from stoker.artifacts.provenance import (  # noqa: F401 - the tracking side's names
    RunInfo,
    config_hash,
    current_run,
    git_info,
    record_use,
    reset_session,
    run_scope,
    tracking_info,
)

__all__ = ["RunInfo", "config_hash", "current_run", "git_info", "record_use", "reset_session",
           "run_scope", "tracking_info"]
