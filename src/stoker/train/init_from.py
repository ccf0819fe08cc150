"""Fine-tuning: load a pretrained model's weights into the recipe's model before step 0.

It is not a resume: the optimizer, the schedule and the step counter start fresh, and when
the run directory already holds a checkpoint (the same run, resumed) that checkpoint wins
and the source weights are not applied again (the Trainer decides; see ``_build``).

Where the weights come from is a *provider*, a callable ``spec -> WeightSource``, handed to
the Trainer by whoever starts the run. This module's :func:`checkpoint_weights` reads what
the training layer itself knows (run and step directories, ``art://`` checkpoints); the
``stoker train`` command passes :func:`stoker.package.init_weights.init_weights`, which adds
``.stoker`` archives and ``hf:DIR`` on top of it. That keeps the layer rule (``train`` is
below ``package``) without a second copy of the archive reader here.

:func:`apply_init` does the checking and the copy, all-or-nothing: every problem (a weight
the source lacks, one the model lacks, a shape that differs, a vocabulary of another size,
an ``ignore`` glob that matches nothing) is collected and raised as one
:class:`InitFromError` (exit 2) before any tensor is touched.
"""
from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoker.errors import CheckpointError

__all__ = ["INIT_FROM_FILE", "InitFromError", "InitReport", "WeightSource", "WeightsProvider", "apply_init",
           "checkpoint_weights", "weights_sha256"]

INIT_FROM_FILE = "init_from.json"  # in the run directory: the weights the run started from


class InitFromError(CheckpointError):
    """``init_from`` names weights that cannot start this recipe's model (exit 2)."""


@dataclass
class WeightSource:
    """Weights to start from: a model state dict and what to record about its origin.

    ``record`` goes into the run's ``init_from.json`` and the published model's lineage:
    the kind (checkpoint, archive, hf), the resolved path and, for a registry model, the
    exact ``art://name:vN``.
    """

    state_dict: dict[str, Any]
    description: str
    record: dict[str, Any] = field(default_factory=dict)


WeightsProvider = Callable[[str], WeightSource]


@dataclass
class InitReport:
    """What :func:`apply_init` loaded, skipped and re-initialised."""

    loaded: list[str]
    ignored: list[str]
    kept_init: list[str]  # model weights the source lacks (strict=false) or ignored
    dropped: list[str]  # source weights the model lacks (strict=false) or ignored
    resized: dict[str, str]  # name -> "rows 0..N-1 copied, N..M-1 fresh init"
    weights_sha256: str

    def lines(self, source: str) -> list[str]:
        """What the run log says about it (one line per fact)."""
        out = [f"init_from {source}: loaded {len(self.loaded)} weight(s) "
               f"(sha256 {self.weights_sha256[:12]}...)"]
        out += [f"init_from: {k} resized for the new vocabulary: {how}"
                for k, how in self.resized.items()]
        if self.kept_init:
            out.append(f"init_from: kept the fresh init of {_listing(self.kept_init)}")
        if self.dropped:
            out.append(f"init_from: did not load {_listing(self.dropped)}")
        return out

    def as_record(self) -> dict[str, Any]:
        return {"loaded": len(self.loaded), "ignored": self.ignored,
                "kept_init": self.kept_init, "dropped": self.dropped,
                "resized": self.resized, "weights_sha256": self.weights_sha256}


def weights_sha256(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict (names, dtypes, shapes and bytes, in name order): the
    identity of the weights a run started from, whatever file they came in."""
    import torch

    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _is_vocab_rows(own: Any, src: Any, vocab_size: int | None) -> bool:
    """Same tensor but for its number of rows, and the model's rows are its vocabulary."""
    return (vocab_size is not None and own.dim() == src.dim() and own.dim() >= 1
            and _shape(own)[1:] == _shape(src)[1:] and int(own.shape[0]) == vocab_size)


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def apply_init(model: Any, source: WeightSource, *, ignore: list[str] | tuple[str, ...] = (),
               strict: bool = True, resize_vocab: bool = False,
               vocab_size: int | None = None) -> InitReport:
    """Copy ``source``'s weights into ``model`` (in place), or raise :class:`InitFromError`
    listing every reason they do not fit, before anything is copied."""
    import torch

    own = model.state_dict()
    src = source.state_dict
    digest = weights_sha256(src)
    globs = list(ignore)
    unused = [g for g in globs
              if not any(fnmatch.fnmatchcase(k, g) for k in (*own, *src))]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in globs)

    missing = sorted(k for k in own if k not in src and not ignored(k))
    unexpected = sorted(k for k in src if k not in own and not ignored(k))
    shapes: list[str] = []
    vocab: list[str] = []
    for k, t in own.items():
        if k in src and not ignored(k) and _shape(t) != _shape(src[k]):
            if _is_vocab_rows(t, src[k], vocab_size):
                vocab.append(k)
            else:
                shapes.append(f"{k}: source {_shape(src[k])}, this model {_shape(t)}")
    problems: list[str] = []
    if unused:
        problems.append(f"init_from.ignore: {', '.join(repr(g) for g in unused)} match no "
                        f"weight (model weights: {_listing(sorted(own))})")
    if shapes:
        problems.append("shapes differ (the recipe's model is not the source's; use the "
                        "source's model settings, or skip these with init_from.ignore):\n    "
                        + "\n    ".join(shapes[:20]))
    if vocab and not resize_vocab:
        rows = int(src[vocab[0]].shape[0])
        problems.append(
            f"the source's vocabulary has {rows} tokens but this run's data has {vocab_size} "
            f"({', '.join(vocab)}): the data was prepared with another tokenizer, so token "
            "ids mean different things. Prepare the data with the source's tokenizer, or set "
            "init_from.resize_vocab=true to copy the overlapping rows and start the others "
            "fresh")
    if strict and missing:
        problems.append(f"the source lacks {len(missing)} weight(s) of this model: "
                        f"{_listing(missing)} (init_from.ignore=[...] keeps their fresh init; "
                        "init_from.strict=false loads what matches)")
    if strict and unexpected:
        problems.append(f"the source has {len(unexpected)} weight(s) this model lacks: "
                        f"{_listing(unexpected)} (skip them with init_from.ignore=[...] or "
                        "init_from.strict=false)")
    if problems:
        raise InitFromError(f"init_from={source.description} does not fit this recipe's "
                            "model; nothing was written:\n  " + "\n  ".join(problems))
    loaded: list[str] = []
    resized: dict[str, str] = {}
    with torch.no_grad():
        for k, t in own.items():
            if k not in src or ignored(k):
                continue
            value = src[k]
            if k in vocab:
                n, m = int(value.shape[0]), int(t.shape[0])
                keep = min(n, m)
                t[:keep].copy_(value[:keep])
                resized[k] = (f"rows 0..{keep - 1} copied from the source ({n} rows)"
                              + (f", rows {keep}..{m - 1} fresh init" if m > keep else ""))
            else:
                t.copy_(value)
            loaded.append(k)
    report = InitReport(loaded, sorted(k for k in {*own, *src} if ignored(k)),
                        sorted([*missing, *(k for k in own if ignored(k))]),
                        sorted([*unexpected, *(k for k in src if ignored(k) and k not in own)]),
                        resized, digest)
    return report


def checkpoint_weights(spec: str, *, registry: Any = None) -> WeightSource:
    """A stoker checkpoint's model weights: run directory, step directory or ``art://``.

    Archives and ``hf:DIR`` are read by :func:`stoker.package.init_weights.init_weights`,
    which ``stoker train`` passes to the Trainer; used on its own, this says so.
    """
    from stoker.train.checkpoint import load_checkpoint
    from stoker.train.loading import find_checkpoint

    record: dict[str, Any] = {"spec": spec, "kind": "checkpoint"}
    if spec.startswith("hf:") or Path(spec).expanduser().is_file():
        raise InitFromError(f"init_from={spec}: archives (.stoker) and hf:DIR are read by "
                            "stoker.package; pass init_weights=stoker.package.init_weights "
                            "to the Trainer (`stoker train` does)")
    if spec.startswith("art://"):
        from stoker.artifacts.registry import resolve_registry

        record["artifact"] = resolve_registry(registry).resolve(spec).uri
    elif not Path(spec).expanduser().exists():
        raise InitFromError(f"init_from={spec} does not exist; give a .stoker archive, a run "
                            "directory, a checkpoint step directory, art://NAME[:TAG] or "
                            "hf:DIR")
    ckpt = find_checkpoint(spec)
    record["path"] = str(Path(ckpt).resolve())
    state = load_checkpoint(ckpt, keys=("model",))
    return WeightSource(dict(state["model"]), spec, record)
