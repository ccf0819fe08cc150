"""Datasets, samplers and loaders for the trainer, from the recipe's ``data`` section.

The training order is owned by a :class:`stoker.data.sampler.ResumableSampler` (a seeded
permutation per epoch, a disjoint slice per rank); the trainer counts the micro-batches it
consumed in the epoch, so a resumed run rebuilds the epoch's permutation and skips exactly
what was already seen. Loaders get a private ``torch.Generator``: creating one must not draw
from the global RNG, or an extra evaluation would change the training stream.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from stoker.errors import DataError

__all__ = ["DataBundle", "build_data", "epoch_loader", "eval_loader", "resolve_data_path"]


@dataclass
class DataBundle:
    """Everything the loop needs to know about its data."""

    train: Any
    eval: Any | None
    vocab_size: int | None
    tokens_per_sample: int | None  # seq_len for token data, None for images
    path: Path | None
    tokenizer: Any | None


def resolve_data_path(path: str) -> Path:
    """A prepared dataset directory from ``data.path`` (``builtin:char``/``builtin:bpe`` too)."""
    if path.startswith("builtin:"):
        kind = path.split(":", 1)[1] or "char"
        from stoker.data.corpus import ensure_default_dataset

        return Path(ensure_default_dataset(kind=kind))
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"data.path={path}: no such directory. Prepare one with `stoker data prepare "
            "--input-path ... --output-dir ...`, or use data.path=builtin:char for the "
            "built-in corpus"
        )
    if not (p / "metadata.json").is_file():
        raise DataError(
            f"data.path={path} is not a prepared dataset (no metadata.json inside); point it "
            "at a directory written by `stoker data prepare`"
        )
    return p


def _metadata(path: Path) -> dict[str, Any]:
    return json.loads((path / "metadata.json").read_text(encoding="utf-8"))


def _tokenizer_type(meta: dict[str, Any]) -> str | None:
    tok = meta.get("tokenizer")
    if isinstance(tok, dict):
        return tok.get("type") or tok.get("kind")
    return tok if isinstance(tok, str) else meta.get("tokenizer_type")


def build_data(data_cfg: Any, model_cfg: Any, *, seed: int) -> DataBundle:
    """Open the train and eval splits and check them against the model config."""
    if data_cfg.type == "digits":
        from stoker.data.images import DigitsDataset

        train = DigitsDataset(data_cfg.train_split, seed=seed)
        ev = DigitsDataset(data_cfg.eval_split, seed=seed) if data_cfg.eval_split else None
        return DataBundle(train, ev, None, None, None, None)

    from stoker.data.datasets import TokenWindowDataset
    from stoker.data.tokenizers import load_tokenizer

    path = resolve_data_path(data_cfg.path)
    meta = _metadata(path)
    kind = _tokenizer_type(meta)
    if data_cfg.tokenizer and kind and kind != data_cfg.tokenizer:
        raise DataError(
            f"data.path={data_cfg.path} was prepared with a '{kind}' tokenizer but this recipe "
            f"expects '{data_cfg.tokenizer}' (data.tokenizer); prepare the data with "
            f"--type {data_cfg.tokenizer} or set data.tokenizer={kind}"
        )
    vocab = int(meta.get("vocab_size") or 0) or None
    want = getattr(model_cfg, "vocab_size", None)
    if want is not None and vocab is not None and want != vocab:
        raise DataError(
            f"data.path={data_cfg.path} was prepared with a tokenizer of {vocab} tokens "
            f"({kind or 'unknown'} tokenizer) but model.vocab_size={want}: the model's "
            "vocabulary must match the data's. Drop model.vocab_size (it is then taken from "
            "the data) or prepare the data with the model's tokenizer"
        )
    train = TokenWindowDataset(path, split=data_cfg.train_split, seq_len=data_cfg.seq_len)
    ev = None
    if data_cfg.eval_split:
        try:
            ev = TokenWindowDataset(path, split=data_cfg.eval_split, seq_len=data_cfg.seq_len)
        except DataError:
            ev = None  # a split too small for one window: evaluation is skipped
        if ev is not None and len(ev) == 0:
            ev = None
    if len(train) == 0:
        raise DataError(
            f"data.path={data_cfg.path}: split '{data_cfg.train_split}' holds fewer than "
            f"seq_len+1={data_cfg.seq_len + 1} tokens; lower data.seq_len or add data"
        )
    tokenizer = load_tokenizer(path)
    return DataBundle(train, ev, vocab or getattr(train, "vocab_size", None),
                      data_cfg.seq_len, path, tokenizer)


def make_sampler(n: int, *, seed: int, shuffle: bool, rank: int, world_size: int) -> Any:
    from stoker.data.sampler import ResumableSampler

    return ResumableSampler(n, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size,
                            drop_last=True)


def epoch_loader(dataset: Any, sampler: Any, epoch: int, *, batch_size: int,
                 skip_batches: int, num_workers: int) -> DataLoader:
    """The rest of ``epoch`` after ``skip_batches`` micro-batches, as a DataLoader."""
    order = [int(i) for i in sampler.indices(epoch)[skip_batches * batch_size:]]
    return DataLoader(
        dataset, batch_size=batch_size, sampler=order, drop_last=True,
        num_workers=num_workers, generator=torch.Generator(),
        persistent_workers=False,
    )


def batches_per_epoch(sampler: Any, batch_size: int) -> int:
    return len(sampler) // batch_size


def eval_loader(dataset: Any, *, batch_size: int, rank: int, world_size: int,
                num_workers: int) -> DataLoader:
    """The eval split in order, each rank a disjoint stride of it."""
    usable = len(dataset) - len(dataset) % world_size  # same batch count on every rank
    order = list(range(rank, usable, world_size))
    return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=False,
                      num_workers=num_workers, generator=torch.Generator())
