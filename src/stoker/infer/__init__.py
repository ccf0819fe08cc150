"""stoker.infer: generation for stoker's language models.

- :class:`TokenStream` and :func:`stoker.infer.generate.generate` (token ids; KV cache for the GPT, hidden state for
  the RNN; prompts of different lengths batch together),
- :func:`complete` / :class:`TextStream` (text in, text out: streaming, several samples,
  stop strings), :func:`sample_text` (one prompt, one string).

Names load lazily so importing the package costs nothing until one is used.
"""
from __future__ import annotations

from stoker._lazy import lazy_getattr

_LAZY = {
    "sample_next": "stoker.infer.generate",
    "sample_text": "stoker.infer.generate",
    "TokenStream": "stoker.infer.generate",
    "Completion": "stoker.infer.text",
    "TextStream": "stoker.infer.text",
    "complete": "stoker.infer.text",
    "encode_prompt": "stoker.infer.text",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
