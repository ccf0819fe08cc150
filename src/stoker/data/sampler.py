"""A seeded, resumable, rank-aware sampler.

Why not ``DistributedSampler``: it cannot resume mid-epoch, so a resumed run would see
different batches. Here the order of epoch ``e`` is a pure function of ``(seed, e, n)``
(numpy's PCG64, stable across platforms), each rank takes every ``world_size``-th index
(disjoint when ``drop_last``), and ``state_dict()`` records the position so a resumed run
yields exactly the remaining indices.

Position: by default, the number of indices this sampler has yielded in the current
epoch. That is exact with ``DataLoader(num_workers=0)``; with workers, the loader reads
ahead, so pass the number of samples actually consumed: ``state_dict(consumed=n)``.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stoker.errors import DataError


class ResumableSampler:
    """Deterministic per-epoch permutation of ``range(n)``, sharded by rank, resumable."""

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True):
        if n < 0:
            raise DataError(f"sampler size must be >= 0, got {n}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not valid for world_size {world_size}")
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.position = 0  # indices of this epoch already yielded/consumed on this rank

    # ------------------------------------------------------------------------ ordering
    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.world_size
        return -(-self.n // self.world_size)

    def indices(self, epoch: int | None = None):
        """This rank's indices for ``epoch`` (numpy int64 array)."""
        import numpy as np

        e = self.epoch if epoch is None else epoch
        if self.shuffle:
            order = np.random.Generator(np.random.PCG64([self.seed, e])).permutation(self.n)
        else:
            order = np.arange(self.n, dtype=np.int64)
        per = len(self)
        total = per * self.world_size
        if total > self.n:  # pad by wrapping around, like DistributedSampler
            order = np.concatenate([order, order[: total - self.n]]) if self.n else order
        return order[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        idx = self.indices()
        start = self.position
        for k in range(start, len(idx)):
            self.position = k + 1
            yield int(idx[k])
        # a full pass: move on to the next epoch so a plain `for epoch: for batch` loop works
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (no-op when already in that epoch, so a
        resumed run that calls ``set_epoch`` keeps its mid-epoch position)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    # ------------------------------------------------------------------------ resuming
    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        pos = self.position if consumed is None else int(consumed)
        return {"epoch": self.epoch, "position": pos, "seed": self.seed, "n": self.n,
                "shuffle": self.shuffle, "rank": self.rank, "world_size": self.world_size,
                "drop_last": self.drop_last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("n", "seed", "shuffle", "world_size", "drop_last"):
            if k in state and state[k] != getattr(self, k):
                raise DataError(
                    f"cannot resume the data order: the checkpoint has {k}={state[k]!r} but this "
                    f"run has {k}={getattr(self, k)!r} (the dataset or data settings changed)"
                )
        pos = int(state.get("position", 0))
        if not 0 <= pos <= len(self):
            raise DataError(f"sampler position {pos} is out of range for {len(self)} samples")
        self.epoch = int(state.get("epoch", 0))
        self.position = pos
