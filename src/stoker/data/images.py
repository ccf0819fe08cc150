"""The scikit-learn digits images (1,797 8x8 grey-scale digits) as a map-style dataset.

The data ships inside scikit-learn (no download), which is the optional extra
``stoker[vision]``; it is imported only when a dataset is made. The train/valid/test split
is a seeded permutation, so the same seed always gives the same split on any machine.
Items are ``{"images": FloatTensor[1, 8, 8] in [0, 1], "labels": LongTensor[]}``.
"""
from __future__ import annotations

import functools
from typing import Any

from stoker.errors import DataError, UserError

__all__ = ["DigitsDataset", "load_digits_arrays"]

SPLITS = ("train", "valid", "test")


@functools.lru_cache(maxsize=1)
def load_digits_arrays() -> tuple[Any, Any]:
    """(images ``float32[N, 8, 8]`` scaled to [0, 1], labels ``int64[N]``), cached."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UserError(
            "the digits dataset needs scikit-learn, which is not installed; install the "
            "vision extra: pip install 'stoker[vision]'"
        ) from exc
    import numpy as np

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).copy()
    labels = np.asarray(bunch.target, dtype=np.int64).copy()
    return images, labels


class DigitsDataset:
    """One split of the digits: ``len()``, ``ds[i] -> {"images", "labels"}``.

    ``valid_fraction``/``test_fraction`` of the shuffled images go to those splits (rounded
    down, at least one image when the fraction is positive), the rest to ``train``.
    """

    num_classes = 10
    image_shape = (1, 8, 8)

    def __init__(
        self,
        split: str = "train",
        *,
        seed: int = 0,
        valid_fraction: float = 0.2,
        test_fraction: float = 0.0,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown digits split {split!r}; valid ones: {', '.join(SPLITS)}")
        if not (0.0 <= valid_fraction < 1 and 0.0 <= test_fraction < 1
                and valid_fraction + test_fraction < 1):
            raise DataError(
                f"valid_fraction={valid_fraction} and test_fraction={test_fraction} must be "
                "in [0, 1) and leave some images for training"
            )
        import torch

        images, labels = load_digits_arrays()
        n = len(labels)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=g)
        n_valid = max(1, int(n * valid_fraction)) if valid_fraction > 0 else 0
        n_test = max(1, int(n * test_fraction)) if test_fraction > 0 else 0
        parts = {
            "valid": order[:n_valid],
            "test": order[n_valid : n_valid + n_test],
            "train": order[n_valid + n_test :],
        }
        idx = parts[split]
        if len(idx) == 0:
            raise DataError(
                f"digits split {split!r} is empty; set "
                f"{'test_fraction' if split == 'test' else 'valid_fraction'} above 0"
            )
        self.split = split
        self.seed = seed
        self.indices = idx
        self.images = torch.from_numpy(images)[idx].unsqueeze(1).contiguous()  # [N, 1, 8, 8]
        self.labels = torch.from_numpy(labels)[idx].contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} digits")
        return {"images": self.images[i], "labels": self.labels[i]}
