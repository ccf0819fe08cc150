"""The scikit-learn digits dataset."""
from __future__ import annotations

import sys

import pytest
import torch

from stoker.data.images import DigitsDataset, load_digits_arrays
from stoker.errors import DataError, UserError


def test_items_and_split_sizes():
    train, valid = DigitsDataset("train", seed=0), DigitsDataset("valid", seed=0)
    assert len(train) + len(valid) == 1797 and len(valid) == 359
    item = train[0]
    assert item["images"].shape == (1, 8, 8) and item["images"].dtype == torch.float32
    assert item["labels"].shape == () and item["labels"].dtype == torch.long
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    assert set(train.indices.tolist()).isdisjoint(valid.indices.tolist())


def test_split_is_deterministic_per_seed():
    a, b = DigitsDataset("valid", seed=1), DigitsDataset("valid", seed=1)
    assert torch.equal(a.indices, b.indices)
    assert not torch.equal(DigitsDataset("valid", seed=1).indices,
                           DigitsDataset("valid", seed=2).indices)


def test_test_split_and_bad_split():
    test = DigitsDataset("test", test_fraction=0.1)
    assert len(test) == 179
    with pytest.raises(DataError, match="valid ones"):
        DigitsDataset("dev")
    with pytest.raises(DataError, match="empty"):
        DigitsDataset("test")


def test_collates_with_default_dataloader():
    loader = torch.utils.data.DataLoader(DigitsDataset("valid"), batch_size=16)
    batch = next(iter(loader))
    assert batch["images"].shape == (16, 1, 8, 8) and batch["labels"].shape == (16,)


def test_missing_sklearn_names_the_extra(monkeypatch):
    load_digits_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(UserError, match=r"stoker\[vision\]"):
            DigitsDataset("train")
    finally:
        load_digits_arrays.cache_clear()
