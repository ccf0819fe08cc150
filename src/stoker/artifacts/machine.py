"""The machine fingerprint: what decides whether two runs can agree bit for bit.

Float results of the same code differ between CPUs: the kernels torch picks (AVX2,
AVX-512, NEON), the BLAS/oneDNN build, the thread count (it splits reductions) and the torch
version all move the last bits of a loss. A run records this fingerprint (``env.json``, the
model artifact, archives) so that a later resume, re-run or ``stoker verify`` can say
whether "not bitwise equal" is a bug or just another machine, and tests can compare golden
numbers exactly where they were recorded and within a stated tolerance elsewhere.

``key`` is a short hash over every field, so "same machine kind" is one string comparison.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import lru_cache
from typing import Any

__all__ = ["DRIFT_NOTE", "cpu_model", "describe", "differences", "machine_fingerprint"]

# Said wherever a run meets another fingerprint: what the user should expect, and why.
DRIFT_NOTE = ("bitwise reproduction needs the same CPU kernels, BLAS build, thread count "
              "and torch version; expect float-level drift")


def cpu_model() -> str:
    """The CPU's marketing name (x86 ``model name``; arm64 has none, so its implementer and
    part numbers), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)  # a bounded read: /proc files have no size
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip().lower(), value.strip())
    if fields.get("model name"):
        return fields["model name"]
    arm = [f"{k}={fields[k]}" for k in ("cpu implementer", "cpu part") if k in fields]
    return " ".join(arm) or platform.processor() or platform.machine()


def _build_hash(torch: Any) -> str:
    """A hash of torch's build configuration (BLAS, oneDNN/MKL versions, compiler flags):
    two wheels of the same version built differently do not compute alike."""
    try:
        text = torch.__config__.show()
    except (AttributeError, RuntimeError):  # a build without the report: say so, not guess
        text = "unknown"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=None)
def _static() -> tuple[tuple[str, Any], ...]:
    import torch

    return (
        ("arch", platform.machine()),
        ("cpu", cpu_model()),
        ("capability", str(torch.backends.cpu.get_cpu_capability())),
        ("torch", str(torch.__version__)),
        ("build", _build_hash(torch)),
        ("cuda_devices", tuple(torch.cuda.get_device_name(i)
                               for i in range(torch.cuda.device_count()))),
    )


def machine_fingerprint(threads: int | None = None) -> dict[str, Any]:
    """The fingerprint of this process: the static fields plus the thread count in use
    (``threads`` when the caller is about to set it, else torch's current one)."""
    import torch

    fp: dict[str, Any] = dict(_static())
    fp["cuda_devices"] = list(fp["cuda_devices"])
    fp["threads"] = int(threads if threads is not None else torch.get_num_threads())
    if os.environ.get("ATEN_CPU_CAPABILITY"):
        fp["aten_cpu_capability"] = os.environ["ATEN_CPU_CAPABILITY"]
    fp["key"] = _key(fp)
    return fp


def _key(fp: dict[str, Any]) -> str:
    body = {k: v for k, v in fp.items() if k != "key"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def differences(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """``field: old -> new`` for each field that differs (``key`` aside); a missing record
    is one difference, since nothing says the machines agree."""
    if not isinstance(recorded, dict) or not recorded:
        return ["fingerprint: not recorded"]
    names = sorted((set(recorded) | set(current)) - {"key"})
    return [f"{n}: {recorded.get(n)!r} -> {current.get(n)!r}" for n in names
            if recorded.get(n) != current.get(n)]


def describe(fp: dict[str, Any]) -> str:
    """One line for messages: ``AMD EPYC (x86_64, AVX512, 2 threads, torch 2.13.0)``."""
    return (f"{fp.get('cpu')} ({fp.get('arch')}, {fp.get('capability')}, "
            f"{fp.get('threads')} threads, torch {fp.get('torch')})")
