"""Text in, text out: batched, streamed generation with stop strings and several samples.

Why a layer over :class:`~stoker.infer.generate.TokenStream`: users think in strings. A
stop string can span tokens and a byte-level BPE token can end inside a UTF-8 character,
so text is emitted only once it can no longer change: the tail that could still grow into
a stop string, and a trailing half character, are held back until the next token decides.

``tokenizer`` needs ``encode(str) -> list[int]`` and ``decode(list[int]) -> str`` (stoker's
tokenizers, or anything shaped like them); ``eos_id`` ends a row when present.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from stoker.errors import UserError
from stoker.infer.generate import TokenStream

__all__ = ["Completion", "TextStream", "complete", "encode_prompt"]


@dataclass
class Completion:
    """One generated text: which prompt, which sample of it, and why it ended."""

    prompt: str
    sample: int
    text: str
    tokens: int
    finish: str  # "eos", "stop" or "length"

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "sample": self.sample, "text": self.text,
                "tokens": self.tokens, "finish": self.finish}


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt``; an empty prompt starts from bos/eos (else token 0).

    A character tokenizer would map unseen characters to ``<unk>`` and generate from
    garbage, so they are refused here, each named.
    """
    chars = getattr(tokenizer, "chars", None)
    if getattr(tokenizer, "kind", None) == "char" and chars is not None:
        known = set(chars)
        unknown = sorted({c for c in prompt if c not in known})
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:20])
            raise UserError(
                f"the prompt has {len(unknown)} character(s) the model's character "
                f"vocabulary does not know: {shown}; remove or replace them "
                f"(the vocabulary has {len(known)} characters)"
            )
    ids = list(tokenizer.encode(prompt)) if prompt else []
    if not ids:
        start = getattr(tokenizer, "bos_id", None)
        if start is None:
            start = getattr(tokenizer, "eos_id", None)
        ids = [start if start is not None else 0]
    return ids


class TextStream:
    """Generate for ``prompts`` x ``num_samples`` rows in one batch, text piece by piece.

    Iterating yields ``(row, piece)`` as soon as a piece is final; :attr:`completions`
    holds the finished texts (row ``r`` is prompt ``r // num_samples``, sample
    ``r % num_samples``).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = 0,
        num_samples: int = 1,
        stop: Sequence[str] = (),
        stop_at_eos: bool = True,
        use_cache: bool = True,
    ) -> None:
        if num_samples < 1:
            raise UserError(f"num_samples must be >= 1, got {num_samples}")
        if any(s == "" for s in stop):
            raise UserError("a stop string must not be empty")
        if not prompts:
            raise UserError("no prompts to generate from")
        self.tokenizer = tokenizer
        self.prompts = list(prompts)
        self.num_samples = num_samples
        self.stop_strings = list(stop)
        ids = [encode_prompt(tokenizer, p) for p in self.prompts]
        rows = [i for i in ids for _ in range(num_samples)]
        self.eos = getattr(tokenizer, "eos_id", None) if stop_at_eos else None
        self.tokens = TokenStream(model, rows, max_new_tokens, temperature=temperature,
                                  top_k=top_k, top_p=top_p, seed=seed, use_cache=use_cache,
                                  eos_id=self.eos)
        n = len(rows)
        self._emitted = [0] * n
        self._text = [""] * n
        self._finish = ["length"] * n
        self._ntok = [0] * n

    def __iter__(self) -> Iterator[tuple[int, str]]:
        ts = self.tokens
        for rows in ts.steps():
            for r in rows.tolist():
                piece = self._advance(r)
                if piece:
                    yield r, piece

    def _advance(self, r: int) -> str:
        ts = self.tokens
        toks = ts.continuation(r)
        if self.eos is not None and self.eos in toks:
            toks = toks[: toks.index(self.eos)]
            self._finish[r] = "eos"
        self._ntok[r] = len(toks)
        text = self.tokenizer.decode(toks)
        cut = self._find_stop(text)
        if cut is not None:
            text = text[:cut]
            self._finish[r] = "stop"
            ts.stop(r)
        self._text[r] = text
        final = ts.finished[r]
        safe = len(text) if final else self._safe_len(text)
        piece = text[self._emitted[r] : safe] if safe > self._emitted[r] else ""
        self._emitted[r] = max(self._emitted[r], safe)
        return piece

    def _find_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self.stop_strings) if i >= 0]
        return min(hits) if hits else None

    def _safe_len(self, text: str) -> int:
        """Length of the prefix that no further token can change."""
        n = len(text)
        while n and text[n - 1] == "\ufffd":  # a byte-level token ended mid-character
            n -= 1
        hold = 0
        for s in self.stop_strings:
            for k in range(min(len(s) - 1, n), 0, -1):
                if text[n - k : n] == s[:k]:
                    hold = max(hold, k)
                    break
        return n - hold

    @property
    def completions(self) -> list[Completion]:
        return [Completion(self.prompts[r // self.num_samples], r % self.num_samples,
                           self._text[r], self._ntok[r], self._finish[r])
                for r in range(len(self._text))]


def complete(model: nn.Module, tokenizer: Any, prompts: Sequence[str],
             **options: Any) -> list[Completion]:
    """Generate for every prompt in one batch and return the finished texts.

    Options are those of :class:`TextStream` (``max_new_tokens``, ``temperature``,
    ``top_k``, ``top_p``, ``seed``, ``num_samples``, ``stop``, ...).
    """
    stream = TextStream(model, tokenizer, prompts, **options)
    for _ in stream:
        pass
    return stream.completions
