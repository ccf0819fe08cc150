"""One writer per run directory: an OS lock plus an owner record beside it.

Two ``stoker train ... output_dir=same`` processes must never both write one run directory
(duplicated ``metrics.jsonl`` lines, two model artifacts for one run, a ``config.yaml`` that
describes another run than its checkpoints). The trainer takes :class:`RunDirLock` before it
writes anything there (``config.yaml``, ``command.txt``, checkpoints, metrics) and holds it
until the run ends; under torchrun only rank 0 takes it.

How it works:

- ``.stoker-run.lock``: an empty file locked with ``fcntl.flock(LOCK_EX | LOCK_NB)``. The
  kernel drops the lock when the process ends in any way, ``kill -9`` included, so a lock is
  never stale and a resumed run simply takes it again. The file itself stays (deleting a
  lock file on release would let a waiter lock an unlinked inode).
- ``.stoker-run.owner.json``: written atomically once the lock is held; host, PID, the
  process's start time and the command. A second process that finds the lock taken reads it
  and says who owns the directory (exit 2).

Shared file systems: ``flock`` works on local disks and on NFSv4 (and NFSv3 with the lock
manager running), but some mounts (NFS with ``nolock`` or ``local_lock=all``, some FUSE and
object-store mounts) either refuse it or lock only within one host. Where ``flock`` fails
outright (``ENOLCK``, ``EOPNOTSUPP``, ...) the owner record becomes the lock: it is created
exclusively, and a record left by a dead process on this host (PID gone or reused) is taken
over; a record from another host is honoured until someone removes it. Where ``flock``
silently locks per host, two hosts can still both run: give runs on such mounts distinct
``output_dir``s.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoker.atomic import atomic_write_text
from stoker.config.secrets import mask_argv
from stoker.errors import OutputError, UserError, write_failure

if TYPE_CHECKING:  # pragma: no cover
    from stoker.train.distributed import DistEnv
    from stoker.train.run_dir import RunPlan

__all__ = ["LOCK_FILE", "OWNER_FILE", "RunDirBusy", "RunDirLock", "claim_run_dir", "read_owner"]

LOCK_FILE = ".stoker-run.lock"
OWNER_FILE = ".stoker-run.owner.json"
# errnos meaning "this file system does not do flock", not "someone holds it"
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


class RunDirBusy(UserError):
    """Another live process owns the run directory (exit 2, naming the owner)."""


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def read_owner(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The owner record of ``run_dir`` (None when absent or unreadable)."""
    try:
        data = json.loads((Path(run_dir) / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_owner(owner: dict[str, Any] | None) -> str:
    """``PID 123 on host h, started 2025-...: stoker train ...`` (or why it is unknown)."""
    if not owner:
        return "a process that has not written its owner record yet"
    return (f"PID {owner.get('pid')} on host {owner.get('host')}, started "
            f"{owner.get('started')}: {owner.get('command') or '(command unknown)'}")


def _owner_alive_here(owner: dict[str, Any]) -> bool:
    """False when the record names a process of this host that no longer runs."""
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell from here: honour it
    try:
        pid = int(owner.get("pid"))
    except (TypeError, ValueError):
        return False
    start = _process_start(pid)
    if start is None:
        return False
    recorded = owner.get("proc_start")
    return not isinstance(recorded, (int, float)) or abs(start - recorded) < 1.0


class RunDirLock:
    """Hold ``run_dir`` for this process (see the module docstring).

    ``acquire()`` creates the directory if needed, takes the lock and writes the owner
    record, or raises :class:`RunDirBusy` naming the owner. ``release()`` removes the owner
    record and drops the lock (the kernel drops it too if the process dies first).
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, argv: Sequence[str] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.argv = list(argv) or list(sys.argv)
        self._fd: int | None = None
        self._record_only = False  # flock unsupported: the owner record is the lock
        # Whether acquiring made the directory: a run that then fails to start removes it.
        self.created = False

    @property
    def held(self) -> bool:
        return self._fd is not None or self._record_only

    def _record(self, via: str) -> dict[str, Any]:
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "proc_start": _process_start(pid), "command": shlex.join(mask_argv(self.argv)),
                "lock": via}

    def _busy(self, owner: dict[str, Any] | None, extra: str = "") -> RunDirBusy:
        return RunDirBusy(
            f"run directory {self.run_dir} is in use by another run ({describe_owner(owner)}). "
            "Only one process may write a run directory: wait for that run to end or stop it, "
            f"or choose another output_dir.{extra}")

    def acquire(self) -> RunDirLock:
        if self.held:
            return self
        self.created = self.created or not self.run_dir.exists()
        try:
            return self._acquire()
        except OSError:  # a full disk, a file in the way: leave no directory we made
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.created:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _acquire(self) -> RunDirLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise self._busy(self._owner_soon()) from None
            if exc.errno in _NO_FLOCK:
                return self._acquire_record()
            raise
        self._fd = fd
        atomic_write_text(self.run_dir / OWNER_FILE,
                          json.dumps(self._record("flock"), indent=1) + "\n")
        return self

    def _owner_soon(self) -> dict[str, Any] | None:
        """The owner's record; it is written just after the lock is taken, so wait a moment."""
        for _ in range(20):
            owner = read_owner(self.run_dir)
            if owner is not None:
                return owner
            time.sleep(0.05)
        return None

    def _acquire_record(self) -> RunDirLock:
        """No flock here: create the owner record exclusively (taking over a dead one's)."""
        path = self.run_dir / OWNER_FILE
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = read_owner(self.run_dir)
                if owner is not None and _owner_alive_here(owner):
                    raise self._busy(owner, f" (this file system does not support flock; if "
                                     f"that run is gone, delete {path})") from None
                path.unlink(missing_ok=True)  # left by a process that died on this host
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(self._record("owner-record"), indent=1) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._record_only = True
            return self
        raise self._busy(read_owner(self.run_dir))

    def release(self) -> None:
        if not self.held:
            return
        owner = read_owner(self.run_dir)
        if owner is not None and owner.get("pid") == os.getpid():
            (self.run_dir / OWNER_FILE).unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
        self._fd = None
        self._record_only = False

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(plan: RunPlan, *, name: str, output_dir: str | None, resume: str | None,
                  argv: Sequence[str], env: DistEnv) -> tuple[RunPlan, RunDirLock | None]:
    """Take ``plan``'s run directory for this run (rank 0 holds the lock); the plan to use.

    A directory another live process holds raises :class:`RunDirBusy` (exit 2) naming the
    owner, on every rank; a directory stoker named itself (no ``output_dir``) that another
    run took meanwhile is swapped for a fresh name. Under the lock the plan is made again,
    so a run that finished while this one was building is resumed, not overwritten.
    """
    from stoker.train import distributed as dist_utils
    from stoker.train.run_dir import plan_run_dir

    lock: RunDirLock | None = None
    error: str | None = None
    disk_failure = False  # a full disk or I/O error: a failed run (exit 1), not bad input
    if env.is_rank_zero:
        for _ in range(5):
            try:
                lock = RunDirLock(plan.run_dir, argv=argv).acquire()
                break
            except RunDirBusy as exc:
                if not plan.auto_named:
                    error = str(exc)
                    break
                plan = plan_run_dir(name=name, output_dir=output_dir, resume=resume or "auto")
            except OSError as exc:  # not writable, a file in the way: every rank must hear it
                failure = write_failure(exc, f"the run directory {plan.run_dir}",
                                        "Free space on that disk, or point output_dir at "
                                        "another one; nothing of this run was kept.")
                error, disk_failure = str(failure), not isinstance(failure, UserError)
                break
        else:
            error = f"could not find a free run directory for '{name}' (last tried {plan.run_dir})"
        if lock is not None and not plan.auto_named and plan.resume_from is None \
                and (resume or "auto") == "auto":
            plan = plan_run_dir(name=name, output_dir=output_dir, resume="auto")
    error, disk_failure, plan = dist_utils.broadcast_object((error, disk_failure, plan), env)
    if error is not None:
        raise OutputError(error) if disk_failure else RunDirBusy(error)
    return plan, lock
