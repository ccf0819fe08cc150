"""Secrets: the one masking rule (config, track, train and launch use it) and configs that
record ``${oc.env:...}`` values unresolved (item 7 of issue 14)."""
from __future__ import annotations

import pytest

from stoker.config import compose, to_record
from stoker.config.secrets import MASK, is_secret, mask_argv, mask_tree


@pytest.mark.parametrize("name", ["HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY",
                                  "db.password", "apiKey", "hfToken", "token", "key",
                                  "client_secret", "DB_PASSWD", "SSH_AUTH_SOCK", "private_key",
                                  "GITLAB_PRIVATE_TOKEN", "cookie"])
def test_secret_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize("name", ["tokenizer", "keys", "max_new_tokens", "eos_token",
                                  "pad_token", "keep_last", "nodes", "MODE", "author", "lr",
                                  "num_tokens", "best_metric"])
def test_not_secret_names(name: str) -> None:
    assert not is_secret(name)


def test_mask_tree_and_argv() -> None:
    tree = {"tracker": {"api_key": "abc", "project": "p", "token": ""}, "data": {"tokenizer": "char"},
            "trainer": {"max_new_tokens": 5}, "list": [{"password": 3}], "flag_key": True}
    assert mask_tree(tree) == {"tracker": {"api_key": MASK, "project": "p", "token": ""},
                               "data": {"tokenizer": "char"}, "trainer": {"max_new_tokens": 5},
                               "list": [{"password": MASK}], "flag_key": True}
    assert mask_argv(["stoker", "train", "x", "+t.api_key=abc", "optim.lr=1", "token="]) == [
        "stoker", "train", "x", f"+t.api_key={MASK}", "optim.lr=1", "token="]


def test_launch_uses_the_same_rule() -> None:
    """No twin: launch imports the rule from the config layer."""
    import importlib.util

    from stoker.launch.executors import process, slurm

    assert importlib.util.find_spec("stoker.launch.masking") is None
    assert slurm.is_secret is is_secret and process.mask_env.__module__ == "stoker.config.secrets"


def test_record_keeps_environment_values_unresolved(monkeypatch) -> None:
    monkeypatch.setenv("MYSECRET", "hunter2")
    cfg = compose({"a": {"api_key": "${oc.env:MYSECRET}", "n": 3,
                         "url": "http://x/${oc.env:MYSECRET}/y",
                         "items": ["${oc.env:MYSECRET}", 1]},
                   "b": "${a.api_key}", "c": "${a.n}", "d": "${a}",
                   "e": "${oc.env:UNSET_VAR_X,dflt}", "f": "plain"})
    rec = to_record(cfg)
    assert "hunter2" not in repr(rec)
    assert rec == {"a": {"api_key": "${oc.env:MYSECRET}", "n": 3,
                         "url": "http://x/${oc.env:MYSECRET}/y",
                         "items": ["${oc.env:MYSECRET}", 1]},
                   "b": "${a.api_key}", "c": 3, "d": "${a}", "e": "${oc.env:UNSET_VAR_X,dflt}",
                   "f": "plain"}
    # the record resolves again (here, or when a run is resumed from it)
    again = to_record(compose(rec))
    assert again == rec
    from stoker.config import to_container

    assert to_container(compose(rec))["d"]["api_key"] == "hunter2"
