"""The data: rows of a CSV file, split into train/valid by a seeded shuffle.

A map-style dataset (``__len__`` + ``__getitem__``), so stoker's resumable sampler orders
it and a resumed run sees exactly the batches it would have seen. Items are tuples
``(features, label)``; the recipe names them with ``data.fields: [features, label]``.
Features are standardised with the training rows' mean and std, for every split.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

import torch
from torch.utils.data import Dataset


class CsvTable(Dataset):
    def __init__(self, path: str, label_column: str, split: str = "train",
                 valid_fraction: float = 0.2, seed: int = 0) -> None:
        with open(Path(path), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"{path} has no rows")
        self.columns = [c for c in rows[0] if c != label_column]
        self.classes = sorted({r[label_column] for r in rows})
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        n_valid = int(len(rows) * valid_fraction)
        picks = {"train": order[n_valid:], "valid": order[:n_valid]}
        if split not in picks:
            raise ValueError(f"split must be one of {sorted(picks)}, got {split!r}")
        x = torch.tensor([[float(r[c]) for c in self.columns] for r in rows])
        train_x = x[picks["train"]]
        mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
        self.x = (x[picks[split]] - mean) / std
        self.y = torch.tensor([self.classes.index(rows[i][label_column]) for i in picks[split]])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]
