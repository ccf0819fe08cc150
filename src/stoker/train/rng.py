"""Capture and restore every random number generator a training step may touch.

Exact resume needs the *same* random stream after a restart: dropout masks, data shuffles
done with ``random``/``numpy``, sampling. The state is returned as plain data (ints, lists,
floats) plus uint8 tensors, which :class:`stoker.train.checkpoint.CheckpointManager` stores
as JSON and safetensors; nothing here needs pickle.
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["capture_rng_state", "restore_rng_state", "preserve_rng_state", "seed_everything"]


def capture_rng_state() -> dict[str, Any]:
    """The state of python ``random``, numpy's global RNG, torch CPU and CUDA generators.

    CUDA generators are captured only when CUDA has been initialised in this process (a
    CPU run on a GPU machine does not create a CUDA context just to checkpoint).
    """
    import numpy as np
    import torch

    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": [int(x) for x in np_state["state"]["key"]],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put every generator back to ``state`` (from :func:`capture_rng_state`).

    Missing parts are left alone (a checkpoint from an older stoker). CUDA states are
    restored for as many devices as both the checkpoint and this machine have; a GPU
    checkpoint resumed on a CPU-only machine skips them, since no CUDA stream exists there.
    """
    import numpy as np
    import torch

    py = state.get("python")
    if py is not None:
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]))
    npst = state.get("numpy")
    if npst is not None:
        np.random.set_state(
            {
                "bit_generator": npst["bit_generator"],
                "state": {"key": np.asarray(npst["key"], dtype=np.uint32), "pos": int(npst["pos"])},
                "has_gauss": int(npst["has_gauss"]),
                "gauss": float(npst["gauss"]),
            }
        )
    t = state.get("torch")
    if t is not None:
        torch.set_rng_state(_as_byte_tensor(t))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(_as_byte_tensor(cuda[i]), device=i)


def _as_byte_tensor(t: Any) -> Any:
    import torch

    return t.detach().to(device="cpu", dtype=torch.uint8).contiguous()


@contextmanager
def preserve_rng_state() -> Iterator[None]:
    """Run a block (sample generation, an eval with dropout) without moving the training RNG.

    Whatever the block draws, the generators are exactly where they were afterwards, so
    turning a sampling callback on or off cannot change the training result.
    """
    saved = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(saved)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (all devices) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
