"""``executor=detached``: a background process in its own session that outlives the
terminal; its output goes to the job's log files (``stoker exp logs ID --follow``)."""
from __future__ import annotations

from stoker.launch.executors.process import ProcessExecutor


class DetachedExecutor(ProcessExecutor):
    kind = "detached"
    new_session = True
