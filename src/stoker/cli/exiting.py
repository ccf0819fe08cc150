"""Ending a stoker process without a last pass of the garbage collector over torch.

When a process that imported torch exits, Python's finalization runs the cyclic garbage
collector over everything still alive: torch's hundreds of thousands of module-level
objects, and after a training the model, optimizer and data too. On the 2-core development
machine that took 0.7 s after a bare ``import torch`` and 1-4 s after a tiny training (load
5-8), between the trainer's last write and the process's exit: the time a preempted Slurm
job spends after its checkpoint before it can requeue, and a finished ``stoker train``
before the prompt returns (BENCHMARKS.md, "Preempt and requeue").

:func:`freeze_gc_at_exit` registers one exit handler, meant to run after every other
(``atexit`` runs handlers last-registered first, so it is registered as the command starts).
It stops the collector, flushes every open Python file object (freeing one would have
flushed it; the objects held in reference cycles are now never freed) and freezes the
collector; finalization then tears modules down as usual and reference counting releases
what it can. Objects in garbage cycles are not finalized (Python does not promise that at
exit either); the system reclaims their memory and descriptors with the process. Exit
handlers (logging, wandb, mlflow) all run first, and the exit status is unchanged.
"""
from __future__ import annotations

import atexit
import gc

__all__ = ["freeze_gc_at_exit"]

_registered = False


def freeze_gc_at_exit() -> None:
    """Register the exit handler (once per process); call it as a command starts."""
    global _registered
    if not _registered:
        _registered = True
        atexit.register(_freeze)


def _freeze() -> None:
    gc.disable()
    _flush_open_files()
    gc.freeze()


def _flush_open_files() -> None:
    """Flush every open Python file object: what finalization would do when it freed them.

    Module globals sit in reference cycles (a module's functions refer back to its
    globals), and so do many objects (a trainer and its callbacks); the collector is what
    frees those at exit, and freeing an open file flushes its buffer. With the collector
    frozen they are never freed, so their buffers are flushed here (a user's callback that
    writes a file it never closes still gets its last lines); the system closes the
    descriptors with the process.
    """
    import _io
    import io

    # io.IOBase is an ABC, slow to test against for each of the ~800 types on torch's heap;
    # every file object (io's own, and any subclass of io.IOBase) derives from its C base.
    base = getattr(_io, "_IOBase", io.IOBase)
    objects = gc.get_objects()
    files = {tp for tp in set(map(type, objects)) if issubclass(tp, base)}
    for obj in objects:
        if type(obj) in files:
            try:
                if not obj.closed:
                    obj.flush()
            except Exception:  # noqa: BLE001,S110 - a broken pipe or a closed device at exit
                pass
