"""Packed supervised fine-tuning data from JSONL prompt/response pairs.

Why packing: short examples padded to ``pack_size`` waste most of each batch; packing
several examples into one sequence does not. Why the loss mask: the model should learn to
answer, not to reproduce prompts, so every label whose target token belongs to a prompt
(or to padding) is ``-100`` (ignored by ``cross_entropy``).

Each example is ``prompt_ids + response_ids + [eos]``. Examples are packed greedily in file
order (first fit over open bins, deterministic) into sequences of ``pack_size + 1`` tokens;
an item is ``{"input_ids", "labels", "position_ids"}`` of length ``pack_size``, with
``position_ids`` restarting at each example so attention can be kept per example.
Examples longer than ``pack_size + 1`` are truncated (their count is in ``.truncated``).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stoker.errors import DataError

IGNORE_INDEX = -100


def read_pairs(path: str | Path, *, prompt_field: str = "prompt", response_field: str = "response",
               skip_bad_lines: bool = False) -> list[tuple[str, str]]:
    """(prompt, response) pairs of a JSONL file; bad lines are errors with file:line."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text("utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read SFT data {p}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text") from e
    pairs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if skip_bad_lines:
                continue
            raise DataError(f"{p}:{n}: not valid JSON ({e}); fix it or skip bad lines") from e
        missing = [f for f in (prompt_field, response_field) if not isinstance(obj.get(f), str)]
        if missing:
            if skip_bad_lines:
                continue
            raise DataError(f"{p}:{n}: missing text field(s) {', '.join(map(repr, missing))} "
                            f"(has: {', '.join(obj)})")
        pairs.append((obj[prompt_field], obj[response_field]))
    if not pairs:
        raise DataError(f"{p}: no prompt/response pairs found")
    return pairs


class PackedSFTDataset:
    """Map-style dataset of packed SFT sequences with prompt tokens masked out of the loss."""

    def __init__(self, source: str | Path | Sequence[tuple[str, str]], tokenizer: Any, pack_size: int, *,
                 prompt_field: str = "prompt", response_field: str = "response",
                 pad_id: int | None = None, skip_bad_lines: bool = False):
        import numpy as np

        if pack_size < 2:
            raise DataError(f"pack_size must be at least 2, got {pack_size}")
        if isinstance(source, (str, Path)):
            pairs = read_pairs(source, prompt_field=prompt_field, response_field=response_field,
                               skip_bad_lines=skip_bad_lines)
        else:
            pairs = list(source)
        eos = tokenizer.eos_id
        self.pack_size = int(pack_size)
        self.pad_id = int(pad_id if pad_id is not None else (eos if eos is not None else 0))
        cap = self.pack_size + 1
        prompts = tokenizer.encode_batch([p for p, _ in pairs])
        responses = tokenizer.encode_batch([r for _, r in pairs])
        self.truncated = 0
        examples = []
        for pi, ri in zip(prompts, responses):
            ids = list(pi) + list(ri) + ([eos] if eos is not None else [])
            is_resp = [False] * len(pi) + [True] * (len(ids) - len(pi))
            if len(ids) > cap:
                self.truncated += 1
                ids, is_resp = ids[:cap], is_resp[:cap]
            examples.append((ids, is_resp))
        bins: list[list[int]] = []  # example indices per bin
        room: list[int] = []
        for k, (ids, _) in enumerate(examples):
            for b in range(len(bins)):
                if room[b] >= len(ids):
                    bins[b].append(k)
                    room[b] -= len(ids)
                    break
            else:
                bins.append([k])
                room.append(cap - len(ids))
        n = len(bins)
        tok = np.full((n, cap), self.pad_id, dtype=np.int64)
        resp = np.zeros((n, cap), dtype=bool)
        pos = np.zeros((n, cap), dtype=np.int64)
        starts = np.zeros((n, cap), dtype=bool)
        for b, members in enumerate(bins):
            o = 0
            for k in members:
                ids, is_resp = examples[k]
                tok[b, o:o + len(ids)] = ids
                resp[b, o:o + len(ids)] = is_resp
                pos[b, o:o + len(ids)] = np.arange(len(ids))
                starts[b, o] = True
                o += len(ids)
        labels = np.where(resp[:, 1:] & ~starts[:, 1:], tok[:, 1:], IGNORE_INDEX)
        self._input = tok[:, :-1]
        self._labels = labels
        self._pos = pos[:, :-1]
        self.num_examples = len(examples)

    def __len__(self) -> int:
        return len(self._input)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {"input_ids": torch.from_numpy(self._input[i].copy()),
                "labels": torch.from_numpy(self._labels[i].copy()),
                "position_ids": torch.from_numpy(self._pos[i].copy())}
