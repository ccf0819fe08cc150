"""The one rule for secrets: which names hold one, and how their values are masked.

A value whose key looks like a secret (``HF_TOKEN``, ``WANDB_API_KEY``, ``db.password``,
``AWS_SECRET_ACCESS_KEY``, ``apiKey``) is shown as ``****`` wherever stoker shows or
sends a config or an environment: ``--dryrun`` and confirmation tables, metric trackers
(TensorBoard, W&B, MLflow), the run's ``command.txt`` and owner record, and everything the
launcher shows or stores. It lives in the config layer so that config, track, train and
launch all apply this same rule.

Names are split into words (``_``, ``-``, ``.``, camelCase); a name is secret when a word is
one of the secret words or ends in ``key``/``token``/``secret``/``password``. Plurals and
counts are not secrets (``keys``, ``max_new_tokens``, ``tokenizer``), nor are a tokenizer's
special tokens (``eos_token``, ``pad_token``).

Values that come from the environment (``${oc.env:VAR}``) are kept out of saved configs
altogether: see :func:`stoker.config.export.to_record`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MASK", "is_secret", "mask_argv", "mask_env", "mask_tree"]

MASK = "****"
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_WORDS = frozenset({
    "token", "key", "secret", "secrets", "password", "passwd", "passphrase", "pwd",
    "credential", "credentials", "auth", "authorization", "cookie", "cookies", "private",
    "apikey", "privatekey", "sas", "bearer",
})
_SECRET_SUFFIXES = ("key", "token", "secret", "password")
_SPECIAL_TOKENS = frozenset({"eos", "bos", "pad", "unk", "sep", "cls", "mask", "special"})


def is_secret(name: Any) -> bool:
    """True for names such as HF_TOKEN, WANDB_API_KEY, DB_PASSWORD, AWS_SECRET_ACCESS_KEY."""
    words = [w.lower() for w in _WORDS.findall(str(name))]
    for i, w in enumerate(words):
        if w == "token" and i and words[i - 1] in _SPECIAL_TOKENS:
            continue  # eos_token: a tokenizer's special token, not a credential
        if w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) or w.startswith("passw"):
            return True
    return False


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of an environment with the values of secret-looking names masked."""
    return {k: (MASK if is_secret(k) and v else v) for k, v in env.items()}


def mask_tree(data: Any) -> Any:
    """A copy of ``data`` with the values of secret-looking keys masked (nested dicts/lists)."""
    if isinstance(data, Mapping):
        return {k: (MASK if is_secret(k) and isinstance(v, (str, int, float)) and v != ""
                    and not isinstance(v, bool) else mask_tree(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_tree(v) for v in data]
    return data


def mask_argv(argv: Sequence[str]) -> list[str]:
    """Command-line words with the values of secret-looking ``key=value`` overrides masked
    (``optim.lr=3e-4`` stays, ``+tracker.api_key=abc`` becomes ``+tracker.api_key=****``)."""
    out = []
    for arg in argv:
        key, eq, value = str(arg).partition("=")
        leaf = key.lstrip("+~").rsplit(".", 1)[-1]
        out.append(f"{key}={MASK}" if eq and value and not key.startswith("-")
                   and is_secret(leaf) else str(arg))
    return out
