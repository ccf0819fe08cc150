"""stoker.infer: generation for stoker's language models.

- :class:`TokenStream` and :func:`stoker.infer.generate.generate` (token ids; KV cache for the GPT, hidden state for
  the RNN; prompts of different lengths batch together),
- :func:`complete` / :class:`TextStream` (text in, text out: streaming, several samples,
  stop strings), :func:`sample_text` (one prompt, one string).

Names load lazily so importing the package costs nothing until one is used.
"""
from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stoker.infer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
