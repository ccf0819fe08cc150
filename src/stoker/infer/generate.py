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
from typing import Any

import torch
from torch import Tensor, nn

from stoker.errors import UserError
from stoker.models.unwrap import unwrap_model as unwrap  # re-exported: public name of this module

__all__ = ["generate", "sample_next", "sample_text", "unwrap"]


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
    """
    _check(max_new_tokens, temperature, top_k, top_p)
    model = unwrap(model)
    squeeze = input_ids.dim() == 1
    if squeeze:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise UserError(f"input_ids must be [B, T] with T >= 1, got {list(input_ids.shape)}")
    device = next(model.parameters()).device
    ids = input_ids.to(device=device, dtype=torch.long)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)

    params = inspect.signature(model.forward).parameters
    extra = {"last_only": True} if "last_only" in params else {}
    was_training = model.training
    model.eval()
    try:
        out = _generate(model, ids, max_new_tokens, temperature, top_k, top_p,
                        use_cache and hasattr(model, "new_cache"), generator, eos_id, extra)
    finally:
        model.train(was_training)
    return out[0] if squeeze else out


def _generate(
    model: nn.Module,
    ids: Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    use_cache: bool,
    generator: torch.Generator | None,
    eos_id: int | None,
    extra: dict[str, Any],
) -> Tensor:
    B, T0 = ids.shape
    limit = _context_limit(model)
    # Preallocated output buffer: no torch.cat per step.
    out = torch.empty(B, T0 + max_new_tokens, dtype=torch.long, device=ids.device)
    out[:, :T0] = ids
    done = torch.zeros(B, dtype=torch.bool, device=ids.device) if eos_id is not None else None
    cache: Any = None
    if use_cache:
        cache = model.new_cache(B, limit if limit is not None else None)
    n = T0  # tokens in `out` so far
    fed = 0  # tokens of `out` already in the cache
    for _ in range(max_new_tokens):
        if cache is not None:
            if limit is not None and n > limit:
                # context overflow: positions shift, so recompute the cropped window
                cache.reset()
                logits = _logits(model(out[:, n - limit : n], cache=cache, **extra))
                fed = n
            else:
                logits = _logits(model(out[:, fed:n], cache=cache, **extra))
                fed = n
        else:
            start = n - limit if limit is not None and n > limit else 0
            logits = _logits(model(out[:, start:n], **extra))
        nxt = sample_next(logits[:, -1, :], temperature=temperature, top_k=top_k, top_p=top_p,
                          generator=generator)
        if done is not None:
            nxt = nxt.masked_fill(done.unsqueeze(1), eos_id)
            done |= nxt.squeeze(1) == eos_id
        out[:, n : n + 1] = nxt
        n += 1
        if done is not None and bool(done.all()):
            break
    return out[:, :n]


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
