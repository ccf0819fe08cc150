"""RNG capture/restore: every generator continues bitwise, through a real checkpoint."""
from __future__ import annotations

import random
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from stoker.train.checkpoint import CheckpointManager
from stoker.train.rng import capture_rng_state, preserve_rng_state, restore_rng_state, seed_everything


def draw() -> tuple:
    return (
        [random.random() for _ in range(3)],
        random.gauss(0, 1),  # leaves a cached gaussian in python's state
        np.random.rand(3).tolist(),
        float(np.random.standard_normal()),
        torch.rand(4).tolist(),
        torch.nn.functional.dropout(torch.ones(16), 0.5).tolist(),
    )


def test_restore_replays_every_generator_exactly() -> None:
    seed_everything(123)
    draw()
    state = capture_rng_state()
    first = draw()
    draw()
    restore_rng_state(state)
    assert draw() == first


def test_state_survives_a_checkpoint_round_trip(tmp_path: Path) -> None:
    seed_everything(7)
    random.gauss(0, 1)
    np.random.standard_normal()
    mgr = CheckpointManager(tmp_path)
    path = mgr.save(1, {"rng": capture_rng_state()})
    expected = draw()
    seed_everything(999)  # a fresh process would start anywhere
    restore_rng_state(mgr.load(path)["rng"])
    assert draw() == expected
    # serialised as JSON + safetensors, no pickle anywhere
    assert sorted(x.name for x in path.iterdir()) == ["COMMITTED", "rng.safetensors", "state.json"]


def test_preserve_rng_state_hides_draws_inside_the_block() -> None:
    seed_everything(1)
    ref = draw()
    seed_everything(1)
    with preserve_rng_state():
        draw()
        draw()
    assert draw() == ref


def test_missing_parts_are_left_alone() -> None:
    seed_everything(3)
    before = np.random.get_state(legacy=False)["state"]["pos"]
    restore_rng_state({"torch": capture_rng_state()["torch"]})
    assert np.random.get_state(legacy=False)["state"]["pos"] == before


def test_cuda_states_restored_per_device_when_present() -> None:
    """No GPU here: check the CUDA branch with torch.cuda mocked (the only thing mocked)."""
    fake = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
         mock.patch.object(torch.cuda, "is_initialized", return_value=True), \
         mock.patch.object(torch.cuda, "get_rng_state_all", return_value=fake):
        state = capture_rng_state()
    assert [t.tolist() for t in state["cuda"]] == [t.tolist() for t in fake]
    calls = []
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
         mock.patch.object(torch.cuda, "device_count", return_value=1), \
         mock.patch.object(torch.cuda, "set_rng_state", side_effect=lambda t, device: calls.append((device, t.tolist()))):
        restore_rng_state(state)
    assert calls == [(0, fake[0].tolist())]  # one device here: only the first state applies


def test_capture_does_not_initialise_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU run on a GPU machine: CUDA is available but not initialised, and capturing the
    RNG state must not create a CUDA context. Every call that would initialise CUDA fails
    here, so the test can fail on any machine (no GPU needed)."""
    def boom(*a, **k):
        raise AssertionError("capturing the RNG state initialised CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    for name in ("init", "_lazy_init", "get_rng_state", "get_rng_state_all", "current_device",
                 "synchronize", "set_device"):
        monkeypatch.setattr(torch.cuda, name, boom)
    state = capture_rng_state()
    assert "cuda" not in state and "torch" in state
    restore_rng_state(state)  # and restoring it does not either
