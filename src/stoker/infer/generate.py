"""Autoregressive generation for stoker's language models (GPT with a KV cache, RNN with its
hidden state), and a text-in/text-out convenience.

A model takes part by having ``forward(input_ids, *, cache=None) -> {"logits": ...}`` and
``new_cache(batch_size, max_len)``; with a cache each step feeds only the newest token.
A ``last_only=True`` keyword, when ``forward`` accepts one, skips the output head for all
but the last position (stoker's models do).
Without one (``use_cache=False``, or a model without ``new_cache``) every step re-runs the
whole (cropped) context: slower, and a reference the cached path is tested against.

Sampling draws from a private ``torch.Generator`` when ``seed`` is given, so generating a
sample during training never disturbs the training RNG stream.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from stoker.errors import UserError
from stoker.models.unwrap import unwrap_model as unwrap  # re-exported: public name of this module

__all__ = ["TokenStream", "generate", "sample_next", "sample_text", "unwrap"]


def _check(max_new_tokens: int, temperature: float, top_k: int | None,
           top_p: float | None) -> None:
    if max_new_tokens < 0:
        raise UserError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k <= 0:
        raise UserError(f"top_k must be a positive integer or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UserError(f"top_p must be in (0, 1], got {top_p}")


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick the next token ``[B, 1]`` from last-position logits ``[B, V]``."""
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the mass before it already reaches top_p (keeps at least one)
        drop_sorted = (cum - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def _context_limit(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "max_seq_len", None) or getattr(model, "max_seq_len", None)
    return limit if isinstance(limit, int) else None


def _logits(out: Any) -> Tensor:
    """``logits`` of a forward's output: a dict's ``"logits"`` or the tensor itself."""
    return out["logits"] if isinstance(out, dict) else out


def check_lm_contract(model: nn.Module, *, vocab_size: int | None = None) -> None:
    """Refuse, with what is wrong, a model that cannot be sampled from.

    The contract: ``forward(input_ids)`` with ``input_ids`` ``[B, T]`` (int64) as its
    first argument returns ``{"logits": [B, T, V]}`` or that tensor (``cache=``,
    ``last_only=`` and ``new_cache()`` are optional, for speed; ``max_seq_len``, on the
    model or its ``config``, crops the context).
    """
    from stoker.models.outputs import describe_output

    model = unwrap(model)
    name = type(model).__name__
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not params:
        raise UserError(f"{name} cannot generate text: its forward takes no positional "
                        "argument; the contract is forward(input_ids) -> {'logits': [B, T, V]}")
    device = next(iter(model.parameters()), torch.zeros(())).device
    ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model(ids)
    except Exception as exc:  # noqa: BLE001 - say which contract the model broke
        raise UserError(f"{name} cannot generate text: forward(input_ids [1, 2]) raised "
                        f"{type(exc).__name__}: {exc}; the contract is forward(input_ids) -> "
                        "{'logits': [B, T, V]}") from None
    finally:
        model.train(was)
    logits = out.get("logits") if isinstance(out, dict) else out
    shape = list(getattr(logits, "shape", []) or [])
    if len(shape) != 3 or shape[:2] != [1, 2] or (vocab_size and shape[2] < vocab_size):
        raise UserError(f"{name} cannot generate text: forward(input_ids [1, 2]) returned "
                        f"{describe_output(out)}, not logits [1, 2, vocab_size"
                        f"{'=' + str(vocab_size) if vocab_size else ''}] (as a tensor or "
                        "under 'logits')")


def _prepare(model: nn.Module, seed: int | None) -> tuple[nn.Module, torch.device,
                                                       torch.Generator | None, dict[str, Any]]:
    model = unwrap(model)
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    params = inspect.signature(model.forward).parameters
    extra = {"last_only": True} if "last_only" in params else {}
    return model, device, generator, extra


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    seed: int | None = None,
    eos_id: int | None = None,
) -> Tensor:
    """Continue ``input_ids`` (``[B, T]`` or ``[T]``) by up to ``max_new_tokens`` tokens.

    Returns prompt + continuation, ``[B, T + n]`` (``[T + n]`` for a 1-D prompt).
    ``temperature=0`` is greedy. With ``eos_id`` a row that produced it keeps emitting
    ``eos_id`` and generation stops once every row has; so ``n <= max_new_tokens``.
    A GPT's context is cropped to its last ``max_seq_len`` tokens when the text grows
    longer (the cache is then rebuilt each step, exactly as the uncached path does).
    Prompts of different lengths: :class:`TokenStream`.
    """
    _check(max_new_tokens, temperature, top_k, top_p)
    squeeze = input_ids.dim() == 1
    if squeeze:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise UserError(f"input_ids must be [B, T] with T >= 1, got {list(input_ids.shape)}")
    stream = TokenStream(model, input_ids, max_new_tokens, temperature=temperature,
                         top_k=top_k, top_p=top_p, use_cache=use_cache, seed=seed,
                         eos_id=eos_id)
    for _ in stream.steps():
        pass
    out = stream.buffer[:, : stream.position]
    return out[0] if squeeze else out


class TokenStream:
    """Generation for a batch of prompts of any lengths, one step at a time.

    Why a class: streaming to a terminal, stop strings and batching all need to see each
    new token as it comes and to end single rows early, and every language model stoker
    trains (GPT with a KV cache, RNN with its hidden state) goes through the same loop.

    Rows are kept aligned without padding or attention masks: the batch starts at the
    shortest prompt, and a row whose prompt is longer is fed its own prompt tokens
    (teacher-forced) until its prompt is used up. Every row therefore sees exactly the
    positions and context it would see alone, so batched greedy output equals single
    calls. ``prompts`` is a ``[B, T]`` tensor or a list of token-id lists.
    """

    def __init__(
        self,
        model: nn.Module,
        prompts: Tensor | Sequence[Sequence[int]],
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        seed: int | None = None,
        eos_id: int | None = None,
    ) -> None:
        _check(max_new_tokens, temperature, top_k, top_p)
        self.model, device, self.generator, self.extra = _prepare(model, seed)
        if isinstance(prompts, Tensor):
            lens = [int(prompts.shape[1])] * int(prompts.shape[0])
            rows: Sequence[Sequence[int]] | Tensor = prompts
        else:
            rows = [list(p) for p in prompts]
            lens = [len(p) for p in rows]
        if not lens or min(lens) == 0:
            raise UserError("every prompt needs at least one token")
        self.lens = lens
        self.max_new_tokens = max_new_tokens
        self.sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        self.eos_id = eos_id
        B, Lmax = len(lens), max(lens)
        self.buffer = torch.zeros(B, Lmax + max_new_tokens, dtype=torch.long, device=device)
        if isinstance(rows, Tensor):
            self.buffer[:, :Lmax] = rows.to(device=device, dtype=torch.long)
        else:
            for i, p in enumerate(rows):
                self.buffer[i, : lens[i]] = torch.tensor(p, dtype=torch.long)
        self.position = min(lens)  # tokens of `buffer` filled in every row
        self.finished = [max_new_tokens == 0] * B
        self.use_cache = use_cache and hasattr(self.model, "new_cache")

    def stop(self, row: int) -> None:
        """End ``row`` early (a stop string was found); the others go on."""
        self.finished[row] = True

    def continuation(self, row: int) -> list[int]:
        """The tokens generated for ``row`` so far (eos included when it came)."""
        start = self.lens[row]
        end = min(self.position, start + self.max_new_tokens)
        return self.buffer[row, start:end].tolist() if end > start else []

    def steps(self) -> Iterator[Tensor]:
        """Run to the end, yielding after each step the rows that got a new token there.

        Each item is a 1-D tensor of row indices; their new token is
        ``buffer[row, position - 1]``.
        """
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                yield from self._loop()
        finally:
            model.train(was_training)

    def _loop(self) -> Iterator[Tensor]:
        model, out, lens = self.model, self.buffer, self.lens
        B = out.shape[0]
        limit = _context_limit(model)
        device = out.device
        lens_t = torch.tensor(lens, device=device)
        ragged = min(lens) != max(lens)
        eos = self.eos_id
        hit_eos = torch.zeros(B, dtype=torch.bool, device=device) if eos is not None else None
        cache: Any = model.new_cache(B, limit) if self.use_cache else None
        fed = 0  # tokens of `out` already in the cache
        ends = [n + self.max_new_tokens for n in lens]
        while not all(self.finished):
            n = self.position
            if cache is not None:
                if limit is not None and n > limit:
                    cache.reset()  # context overflow: positions shift, recompute the window
                    logits = _logits(model(out[:, n - limit : n], cache=cache, **self.extra))
                else:
                    logits = _logits(model(out[:, fed:n], cache=cache, **self.extra))
                fed = n
            else:
                start = n - limit if limit is not None and n > limit else 0
                logits = _logits(model(out[:, start:n], **self.extra))
            nxt = sample_next(logits[:, -1, :], generator=self.generator,
                              **self.sampling).squeeze(1)
            if hit_eos is not None:
                nxt = nxt.masked_fill(hit_eos, eos)
            if ragged:
                fresh = lens_t <= n  # rows past their prompt sample; others read their prompt
                nxt = torch.where(fresh, nxt, out[:, n])
            else:
                fresh = None
            out[:, n] = nxt
            self.position = n + 1
            if hit_eos is not None:
                hit_eos |= nxt == eos if fresh is None else fresh & (nxt == eos)
            rows = [i for i in range(B) if lens[i] <= n and not self.finished[i]]
            for i in rows:
                if n + 1 >= ends[i]:
                    self.finished[i] = True
            if hit_eos is not None and bool(hit_eos.any()):
                for i in hit_eos.nonzero().flatten().tolist():
                    self.finished[i] = True
            yield torch.tensor(rows, dtype=torch.long)


def sample_text(
    model: nn.Module,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 200,
    *,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
    use_cache: bool = True,
    stop_at_eos: bool = True,
) -> str:
    """Encode ``prompt``, generate, and decode prompt + continuation to text.

    ``tokenizer`` needs ``encode(str) -> list[int]`` and ``decode(list[int]) -> str``
    (stoker's tokenizers, or anything shaped like them). An empty prompt starts from the
    tokenizer's ``bos_id``/``eos_id`` when it has one, else from token 0.
    """
    ids = list(tokenizer.encode(prompt)) if prompt else []
    eos = getattr(tokenizer, "eos_id", None) if stop_at_eos else None
    if not ids:
        start = getattr(tokenizer, "bos_id", None)
        if start is None:
            start = getattr(tokenizer, "eos_id", None)
        ids = [start if start is not None else 0]
    x = torch.tensor([ids], dtype=torch.long)
    y = generate(model, x, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                 use_cache=use_cache, seed=seed, eos_id=eos)
    toks = y[0].tolist()
    if prompt == "":
        toks = toks[1:]
    if eos is not None and eos in toks[len(ids):]:
        toks = toks[: len(ids) + toks[len(ids):].index(eos)]
    return tokenizer.decode(toks)
