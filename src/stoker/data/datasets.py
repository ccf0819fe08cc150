"""Fixed-length language-modelling windows read straight from memory-mapped token shards.

Why memory-mapped: a prepared dataset may be larger than RAM, and opening it must cost
nothing; the OS page cache does the rest. Windows are ``seq_len + 1`` tokens cut at
``i * stride``; ``input_ids`` are the first ``seq_len``, ``labels`` the last ``seq_len``.
A window may cross a shard boundary (shards are one stream, split by unit).

Shuffling and resumable position live in :class:`stoker.data.sampler.ResumableSampler`.
``__getitems__`` (used by ``DataLoader`` for a whole batch) gathers every window of a
batch with one numpy fancy-index per shard, which is what keeps reads far above training
speed. Pickling (DataLoader workers) drops the memory maps and reopens them lazily.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

from stoker.data.shards import read_metadata, resolve_split
from stoker.errors import DataError


class TokenWindowDataset:
    """Map-style dataset of ``{"input_ids", "labels"}`` LongTensor windows of ``seq_len``."""

    def __init__(self, path: str | Path, split: str = "train", seq_len: int = 256, *,
                 stride: int | None = None):
        self.path = Path(path).expanduser()
        self.metadata: dict[str, Any] = read_metadata(self.path)
        self.split = resolve_split(self.metadata, split, str(self.path))
        if seq_len < 1:
            raise DataError(f"seq_len must be at least 1, got {seq_len}")
        self.seq_len = int(seq_len)
        self.stride = int(stride or seq_len)
        if self.stride < 1:
            raise DataError(f"stride must be at least 1, got {stride}")
        info = self.metadata["splits"][self.split]
        self._files = [self.path / s["file"] for s in info["shards"] if s["tokens"] > 0]
        sizes = [s["tokens"] for s in info["shards"] if s["tokens"] > 0]
        self._starts = [0]
        for n in sizes:
            self._starts.append(self._starts[-1] + n)
        self.num_tokens = self._starts[-1]
        self.dtype = self.metadata["dtype"]
        need = self.seq_len + 1
        if self.num_tokens < need:
            raise DataError(
                f"{self.path}: split {self.split!r} has {self.num_tokens} tokens, fewer than "
                f"seq_len + 1 = {need}; lower seq_len or prepare more data"
            )
        self._len = (self.num_tokens - need) // self.stride + 1
        self._maps: list[Any] | None = None
        self._tokenizer = None

    # ------------------------------------------------------------------ public properties
    @property
    def vocab_size(self) -> int:
        return int(self.metadata["vocab_size"])

    @property
    def eos_id(self) -> int | None:
        return self.metadata.get("eos_id")

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from stoker.data.tokenizers import load_tokenizer

            self._tokenizer = load_tokenizer(self.path / "tokenizer")
        return self._tokenizer

    def __len__(self) -> int:
        return self._len

    # ------------------------------------------------------------------------- reading
    def _open(self) -> list[Any]:
        import numpy as np

        if self._maps is None:
            dt = np.dtype(self.dtype).newbyteorder("<")
            maps = []
            for f in self._files:
                try:
                    maps.append(np.memmap(f, dtype=dt, mode="r"))
                except OSError as e:
                    raise DataError(f"cannot read shard {f}: {e.strerror}") from e
            self._maps = maps
        return self._maps

    def tokens(self, start: int, stop: int):
        """Tokens ``[start, stop)`` of the split as a numpy array (crosses shards)."""
        import numpy as np

        maps = self._open()
        k = bisect.bisect_right(self._starts, start) - 1
        local = start - self._starts[k]
        n = stop - start
        m = maps[k]
        if local + n <= len(m):
            return m[local:local + n]
        parts = []
        while n > 0:
            m = maps[k]
            take = min(n, len(m) - local)
            parts.append(m[local:local + take])
            n -= take
            k += 1
            local = 0
        return np.concatenate(parts)

    def _check(self, i: int) -> int:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"window {i} out of range for {self._len} windows")
        return i

    def __getitem__(self, i: int) -> dict[str, Any]:
        import numpy as np
        import torch

        i = self._check(int(i))
        start = i * self.stride
        w = torch.from_numpy(self.tokens(start, start + self.seq_len + 1).astype(np.int64))
        return {"input_ids": w[:-1], "labels": w[1:]}

    def get_batch(self, indices) -> dict[str, Any]:
        """Windows ``indices`` stacked: ``{"input_ids": [B, T], "labels": [B, T]}``."""
        import numpy as np
        import torch

        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -self._len or idx.max() >= self._len):
            raise IndexError(f"window index out of range for {self._len} windows")
        idx = np.where(idx < 0, idx + self._len, idx)
        maps = self._open()
        L = self.seq_len + 1
        starts = idx * self.stride
        out = np.empty((len(idx), L), dtype=np.int64)
        bounds = np.asarray(self._starts, dtype=np.int64)
        shard = np.searchsorted(bounds, starts, side="right") - 1
        local = starts - bounds[shard]
        inside = local + L <= bounds[shard + 1] - bounds[shard]
        ar = np.arange(L, dtype=np.int64)
        for k in np.unique(shard[inside]):
            sel = np.flatnonzero(inside & (shard == k))
            out[sel] = maps[k][local[sel, None] + ar]
        for j in np.flatnonzero(~inside):
            out[j] = self.tokens(int(starts[j]), int(starts[j]) + L)
        t = torch.from_numpy(out)
        return {"input_ids": t[:, :-1], "labels": t[:, 1:]}

    def __getitems__(self, indices) -> list[dict[str, Any]]:
        """Batched fetch used by ``DataLoader``: one gather per shard instead of B reads."""
        b = self.get_batch(indices)
        return [{"input_ids": x, "labels": y} for x, y in zip(b["input_ids"], b["labels"])]

    # ------------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_maps"] = None
        d["_tokenizer"] = None
        return d

    def __repr__(self) -> str:
        return (f"TokenWindowDataset({str(self.path)!r}, split={self.split!r}, seq_len={self.seq_len}, "
                f"windows={self._len}, tokens={self.num_tokens})")
