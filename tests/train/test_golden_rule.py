"""The golden-number rule itself: exact where recorded, a tolerance elsewhere, and both
strict enough to catch a change that moves the numbers."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from golden import CROSS_MACHINE_RTOL, check_golden, record_golden

HERE = {"arch": "x86_64", "cpu": "CPU A", "capability": "AVX512", "torch": "2.13.0",
        "build": "b1", "threads": 1, "key": "k1"}
THERE = {**HERE, "cpu": "CPU B", "capability": "AVX2", "key": "k2"}
LOSSES = [3.8058013916015625, 3.728827476501465, 3.6216061115264893]


def test_exact_on_the_recording_machine_even_one_ulp_fails() -> None:
    golden = {"records": [{"machine": HERE, "losses": LOSSES}]}
    check_golden(golden, dict(HERE, key="other"), list(LOSSES))  # the key is not compared
    moved = [LOSSES[0], math.nextafter(LOSSES[1], 10.0), LOSSES[2]]
    with pytest.raises(AssertionError, match="recorded on"):
        check_golden(golden, HERE, moved)


def test_another_machine_gets_the_tolerance_and_a_warning() -> None:
    golden = {"records": [{"machine": HERE, "losses": LOSSES}]}
    drift = [x * (1 + 2e-7) for x in LOSSES]
    with pytest.warns(UserWarning, match="not exactly"):
        check_golden(golden, THERE, drift)
    changed = [x * (1 + 20 * CROSS_MACHINE_RTOL) for x in LOSSES]
    with pytest.raises(AssertionError, match="differ beyond"):
        check_golden(golden, THERE, changed)


def test_recording_keeps_other_machines(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    record_golden(path, HERE, LOSSES)
    record_golden(path, THERE, [1.0, 2.0, 3.0])
    record_golden(path, HERE, [4.0, 5.0, 6.0])
    import json
    recs = json.loads(path.read_text())["records"]
    assert [(r["machine"]["cpu"], r["losses"][0]) for r in recs] == [("CPU B", 1.0), ("CPU A", 4.0)]
