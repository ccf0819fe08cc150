"""``executor=local``: here and now.

``stoker train`` with the local executor runs in the current process exactly as it always
did (the CLI never calls this class for it). Tasks of an experiment run as child processes
in the terminal's session, so Ctrl-C reaches them and they end with the launcher.
"""
from __future__ import annotations

from stoker.launch.executors.process import ProcessExecutor


class LocalExecutor(ProcessExecutor):
    kind = "local"
    outlives_launcher = False
    new_session = False
    where = "a child process of this terminal (ends with it)"
