"""Secrets never leave the launcher: values of secret-looking names are masked.

Applied to everything the launcher shows or stores (``--dryrun`` output, ``command.txt``,
``task.json``); the real values only reach the job's process environment.
"""
from __future__ import annotations

import re
from typing import Any

MASK = "****"
_SECRET = re.compile(r"token|key|passw|secret|credential|auth|cookie|private", re.I)


def is_secret(name: str) -> bool:
    """True for names such as HF_TOKEN, WANDB_API_KEY, DB_PASSWORD, AWS_SECRET_ACCESS_KEY."""
    return bool(_SECRET.search(str(name)))


def mask_env(env: dict[str, str]) -> dict[str, str]:
    return {k: (MASK if is_secret(k) and v else v) for k, v in env.items()}


def mask_tree(data: Any) -> Any:
    """A copy of ``data`` with the values of secret-looking keys masked (nested dicts/lists)."""
    if isinstance(data, dict):
        return {k: (MASK if is_secret(k) and isinstance(v, (str, int, float)) and v != ""
                    else mask_tree(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_tree(v) for v in data]
    return data
