"""Golden numbers that pass on any machine: exact on the fingerprint they were recorded on,
within a stated tolerance elsewhere.

Float results depend on the CPU's kernels, the BLAS build, the thread count and the torch
version (``stoker.artifacts.machine``), so a loss recorded on an Intel AVX2 machine differs in
its 7th digit on an AMD AVX-512 one. Exactness between two runs on one machine is what the
exact-resume tests check; the golden test guards against a change that moves the numbers,
which is far above this drift.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

# Measured drift between machine kinds over 20 steps of the tiny recipe: at most 1.6e-7 relative
# (the Intel AVX2 record against an AMD EPYC with AVX-512, AVX2 and scalar kernels); a real change (an lr, an init, a data order)
# moves the losses by 1e-2 or more. 1e-4 sits between the two with room on both sides.
CROSS_MACHINE_RTOL = 1e-4

# Fields of the fingerprint that decide the float results (``key`` and the CUDA devices of
# a CPU run do not).
_DECIDING = ("arch", "cpu", "capability", "torch", "build", "threads", "aten_cpu_capability")


def _same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _DECIDING)


def check_golden(golden: dict[str, Any], machine: dict[str, Any], got: list[float]) -> None:
    """Exact against the record made on this machine; otherwise every record within
    ``CROSS_MACHINE_RTOL``, with a warning naming the machine it was recorded on."""
    records = golden["records"]
    for rec in records:
        if _same_machine(rec["machine"], machine):
            assert got == rec["losses"], f"golden losses moved on the machine they were " \
                                         f"recorded on ({rec['machine'].get('cpu')})"
            return
    for rec in records:
        want = rec["losses"]
        assert len(got) == len(want)
        bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want))
               if not math.isclose(g, w, rel_tol=CROSS_MACHINE_RTOL, abs_tol=0.0)]
        assert not bad, (f"golden losses differ beyond rtol {CROSS_MACHINE_RTOL} from those "
                         f"recorded on {rec['machine'].get('cpu')}: {bad[:3]}")
    warnings.warn(f"golden losses compared within rtol {CROSS_MACHINE_RTOL}, not exactly: "
                  f"none was recorded on {machine.get('cpu')} "
                  f"({machine.get('capability')}, {machine.get('threads')} threads); "
                  f"record with STOKER_RECORD_GOLDEN=1", stacklevel=2)


def record_golden(path: Path, machine: dict[str, Any], got: list[float]) -> None:
    """Add (or replace) the record of this machine; the others stay."""
    golden = json.loads(path.read_text()) if path.exists() else {"records": []}
    keep = [r for r in golden["records"] if not _same_machine(r["machine"], machine)]
    golden["records"] = [*keep, {"machine": machine, "losses": got}]
    path.write_text(json.dumps(golden, indent=1) + "\n")
