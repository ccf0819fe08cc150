"""stoker.infer: generation for stoker's language models.

``stoker.infer.generate.generate`` (KV cache for the GPT, hidden state for the RNN) and
``stoker.infer.generate.sample_text`` (text in, text out).
"""
