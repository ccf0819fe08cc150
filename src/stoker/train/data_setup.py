"""Datasets, samplers and loaders for the trainer, from the recipe's ``data`` section.

Every data kind ends up here the same way: a training dataset, an optional eval dataset
and a collate function in a :class:`DataBundle`. The built-in kinds (``tokens``,
``digits``) are entries of :data:`stoker.train.recipe.DATA_REGISTRY`; a ``_target_`` node
builds the user's dataset (:func:`build_target_data`).

The training order of a map-style dataset is owned by a
:class:`stoker.data.sampler.ResumableSampler` (a seeded permutation per epoch, a disjoint
slice per rank); the trainer counts the micro-batches it consumed in the epoch, so a
resumed run rebuilds the epoch's permutation and skips exactly what was already seen. An
iterable dataset keeps its own position: it is saved with ``state_dict()`` in every
checkpoint and restored with ``load_state_dict()`` (the resume contract in README.md, "Bring your own code").
Loaders get a private ``torch.Generator``: creating one must not draw from the global RNG,
or an extra evaluation would change the training stream.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate

from stoker.errors import ConfigError, ConfigProblem, DataError

__all__ = ["DataBundle", "build_data", "build_target_data", "epoch_loader", "eval_loader",
           "is_iterable", "resolve_data_path"]


@dataclass
class DataBundle:
    """Everything the loop needs to know about its data."""

    train: Any
    eval: Any | None
    vocab_size: int | None
    tokens_per_sample: int | None  # seq_len for token data, None for images
    path: Path | None
    tokenizer: Any | None
    collate: Callable[[list[Any]], Any] | None = None  # None: torch's default_collate

    @property
    def iterable(self) -> bool:
        return is_iterable(self.train)

    def probe_batch(self) -> Any:
        """One item of the training split as a batch of one (for the key checks)."""
        collate = self.collate or default_collate
        return collate([first_item(self.train)])


def is_iterable(dataset: Any) -> bool:
    """An iterable-style dataset (no random access): read in its own order."""
    return isinstance(dataset, IterableDataset) or (
        not hasattr(dataset, "__getitem__") and hasattr(dataset, "__iter__"))


def has_resume_contract(dataset: Any) -> bool:
    return callable(getattr(dataset, "state_dict", None)) and callable(
        getattr(dataset, "load_state_dict", None))


def first_item(dataset: Any) -> Any:
    """Item 0 of a map-style dataset; the first item of an iterable one, which is then
    rewound (through its resume contract, when it has one) so the probe costs no data."""
    if not is_iterable(dataset):
        if len(dataset) == 0:
            raise DataError(f"the training dataset ({type(dataset).__name__}) is empty")
        return dataset[0]
    start = dataset.state_dict() if has_resume_contract(dataset) else None
    try:
        item = next(iter(dataset))
    except StopIteration:
        raise DataError(f"the training dataset ({type(dataset).__name__}) yields no items") \
            from None
    if start is not None:
        dataset.load_state_dict(start)
    return item


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
    """Open the train and eval splits of any data kind and check them against the model."""
    from stoker.train.recipe import DATA_REGISTRY, TargetDataConfig

    if isinstance(data_cfg, TargetDataConfig):
        return build_target_data(data_cfg, model_cfg, seed=seed)
    return DATA_REGISTRY[data_cfg.type].builder()(data_cfg, model_cfg, seed=seed)


def build_digits_data(data_cfg: Any, model_cfg: Any, *, seed: int) -> DataBundle:
    """``data.type=digits``: scikit-learn's 8x8 digits, seeded train/valid/test splits."""
    from stoker.data.images import DigitsDataset

    train = DigitsDataset(data_cfg.train_split, seed=seed)
    ev = DigitsDataset(data_cfg.eval_split, seed=seed) if data_cfg.eval_split else None
    return DataBundle(train, ev, None, None, None, None)


def build_token_data(data_cfg: Any, model_cfg: Any, *, seed: int) -> DataBundle:
    """``data.type=tokens``: windows of a directory prepared by ``stoker data prepare``."""
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


# ------------------------------------------------------------------- user datasets
def build_target_data(data_cfg: Any, model_cfg: Any, *, seed: int) -> DataBundle:
    """A ``data: {_target_: ...}`` node: the user's dataset for each split, named fields,
    the collate function. ``vocab_size``, ``seq_len`` and ``tokenizer`` attributes of the
    training dataset, when it has them, play the role they have for token data."""
    train = _build_split(data_cfg, "train")
    ev = _build_split(data_cfg, "eval")
    collate = _build_collate(data_cfg.collate)
    first = first_item(train)
    if not isinstance(first, Mapping):
        raise DataError(
            f"data: items of {type(_inner(train)).__name__} are {_describe(first)}, not dicts; "
            "return a dict of tensors from __getitem__ or name the items of a tuple with "
            "data.fields: [name, ...]")
    vocab = getattr(train, "vocab_size", None)
    seq = getattr(train, "seq_len", None)
    return DataBundle(train, ev, vocab if isinstance(vocab, int) else None,
                      seq if isinstance(seq, int) else None, None,
                      getattr(train, "tokenizer", None), collate)


def _build_split(data_cfg: Any, split: str) -> Any:
    from stoker.config.instantiate import build

    node = data_cfg.dataset_node(split)
    if node is None:
        return None
    where = "data" if split == "train" else "data.eval"
    try:
        dataset = build(node, validate=False)
    except (ConfigError, DataError):
        raise
    except Exception as exc:  # noqa: BLE001 - the user's constructor: say which and why
        raise DataError(f"{where}: building {node['_target_']}(...) failed: "
                        f"{type(exc).__name__}: {exc}") from None
    if not (is_iterable(dataset) or hasattr(dataset, "__getitem__")):
        raise DataError(f"{where}: {node['_target_']} built a {type(dataset).__name__}, which "
                        "is not a dataset (it needs __getitem__ and __len__, or __iter__)")
    fields = data_cfg.fields
    if fields:
        dataset = (NamedIterable(dataset, fields) if is_iterable(dataset)
                   else NamedItems(dataset, fields))
    return dataset


def _build_collate(node: Any) -> Callable[[list[Any]], Any] | None:
    """A function node is called with the list of items (its other keys are keyword
    arguments); a class node is built, then called."""
    if not node:
        return None
    import functools
    import inspect

    from stoker.config.instantiate import build
    from stoker.config.targets import import_target

    target = import_target(node["_target_"])
    if inspect.isclass(target):
        return build(node, validate=False)
    args = {k: v for k, v in node.items() if not k.startswith("_")}
    return functools.partial(target, **args) if args else target


def _describe(item: Any) -> str:
    if isinstance(item, (tuple, list)):
        return f"{type(item).__name__}s of {len(item)}"
    return f"{type(item).__name__} objects"


def _inner(dataset: Any) -> Any:
    return getattr(dataset, "dataset", dataset) if isinstance(
        dataset, (NamedItems, NamedIterable)) else dataset


def _named(item: Any, fields: Sequence[str], dataset: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if not isinstance(item, (tuple, list)) or len(item) != len(fields):
        raise DataError(f"data.fields names {len(fields)} items ({', '.join(fields)}) but "
                        f"{type(dataset).__name__} returned {_describe(item)}")
    return dict(zip(fields, item))


class NamedItems(torch.utils.data.Dataset):
    """A map-style dataset whose tuple items are named by ``data.fields``."""

    def __init__(self, dataset: Any, fields: Sequence[str]) -> None:
        self.dataset = dataset
        self.fields = list(fields)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return _named(self.dataset[i], self.fields, self.dataset)

    def __getattr__(self, name: str) -> Any:  # vocab_size, tokenizer, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class NamedIterable(IterableDataset):
    """An iterable dataset whose tuple items are named by ``data.fields``; its resume
    contract (``state_dict``/``load_state_dict``) is the wrapped dataset's."""

    def __init__(self, dataset: Any, fields: Sequence[str]) -> None:
        self.dataset = dataset
        self.fields = list(fields)

    def __iter__(self) -> Any:
        for item in self.dataset:
            yield _named(item, self.fields, self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def check_iterable_data(dataset: Any, recipe: Any) -> None:
    """What training from an iterable dataset needs: a length in steps, and (unless
    ``resume=never``) the resume contract, read in this process so its state is exact."""
    name = type(_inner(dataset)).__name__
    problems = []
    if recipe.trainer.max_steps is None:
        problems.append(ConfigProblem(
            "trainer.max_steps", f"{name} is an iterable dataset (no length), so an epoch "
            "cannot be counted in steps; set trainer.max_steps instead of trainer.epochs"))
    if recipe.resume != "never":
        if not has_resume_contract(dataset):
            problems.append(ConfigProblem(
                "data", f"{name} is an iterable dataset without state_dict()/"
                "load_state_dict(), so a resumed run could not continue where this one "
                "stopped (resume is on: resume=" + recipe.resume + "); add the two methods "
                "(the resume contract in README.md, Bring your own code), use a map-style "
                "dataset "
                "(__getitem__ + __len__), or set resume=never"))
        elif recipe.data.num_workers:
            problems.append(ConfigProblem(
                "data.num_workers", f"{name} is an iterable dataset read through its "
                "state_dict(); worker processes would hold copies of its position, so use "
                "data.num_workers=0 (or resume=never)"))
    if problems:
        raise ConfigError(problems=problems)


def make_sampler(n: int, *, seed: int, shuffle: bool, rank: int, world_size: int) -> Any:
    from stoker.data.sampler import ResumableSampler

    return ResumableSampler(n, seed=seed, shuffle=shuffle, rank=rank, world_size=world_size,
                            drop_last=True)


def epoch_loader(dataset: Any, sampler: Any, epoch: int, *, batch_size: int,
                 skip_batches: int, num_workers: int,
                 collate: Callable[[list[Any]], Any] | None = None) -> DataLoader:
    """The rest of ``epoch`` after ``skip_batches`` micro-batches, as a DataLoader.

    An iterable dataset (``sampler`` None) is read from where it is: its own position was
    restored by ``load_state_dict``, so nothing is skipped here."""
    if sampler is None:
        return DataLoader(dataset, batch_size=batch_size, drop_last=True,
                          num_workers=num_workers, collate_fn=collate)
    order = [int(i) for i in sampler.indices(epoch)[skip_batches * batch_size:]]
    return DataLoader(
        dataset, batch_size=batch_size, sampler=order, drop_last=True,
        num_workers=num_workers, generator=torch.Generator(),
        persistent_workers=False, collate_fn=collate,
    )


def batches_per_epoch(sampler: Any, batch_size: int) -> int:
    return len(sampler) // batch_size


def eval_loader(dataset: Any, *, batch_size: int, rank: int, world_size: int,
                num_workers: int, collate: Callable[[list[Any]], Any] | None = None
                ) -> DataLoader:
    """The eval split in order, each rank a disjoint stride of it (an iterable dataset is
    read as it comes: sharding it across processes is its own business)."""
    if is_iterable(dataset):
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                          collate_fn=collate)
    usable = len(dataset) - len(dataset) % world_size  # same batch count on every rank
    order = list(range(rank, usable, world_size))
    return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=False,
                      num_workers=num_workers, generator=torch.Generator(), collate_fn=collate)
