"""``python -m stoker.launch.driver EXP_ID STORE_ROOT``: submit a detached experiment's
waiting tasks as their dependencies succeed, then exit.

Started in its own session by ``Experiment.launch(detach=True)`` only when some task waits
for another and its executor cannot make the scheduler wait. Its output goes to
``driver.log`` in the experiment folder.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from stoker.launch.experiment import drive
    from stoker.launch.store import JobStore

    exp_id, root = argv[0], argv[1]
    store = JobStore(root)
    states = drive(store, exp_id)
    for st in states:
        sys.stdout.write(f"{st.record.name}: {st.status.state.value} {st.status.detail}\n")
    return 1 if any(st.status.state.value == "FAILED" for st in states) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
