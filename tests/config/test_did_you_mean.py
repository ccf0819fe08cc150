""""Did you mean": with several close candidates, only the closest is suggested."""
from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from stoker.config import compose, validate
from stoker.errors import ConfigError


def opt(learning_rate: float = 1.0, learning_rates: tuple = (), learn_rate: float = 0.0,
        lr: float = 0.0) -> None:
    """A target with several argument names close to one typo."""


def test_only_the_closest_candidate_is_suggested() -> None:
    names = ["learning_rate", "learning_rates", "learn_rate", "lr"]
    assert len(difflib.get_close_matches("learning_rat", names, n=5, cutoff=0.6)) >= 3
    cfg = compose({"o": {"_target_": f"{__name__}.opt", "learning_rat": 3}})
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    msg = str(e.value)
    assert "Unknown key 'learning_rat'" in msg and "Did you mean 'learning_rate'?" in msg
    assert "'learning_rates'" not in msg and "'learn_rate'" not in msg


@pytest.mark.integration
@pytest.mark.parametrize("args,closest,other", [
    (["config", "validate", "gpt-char", "trainer.eval_evey=5"], "eval_every", "log_every"),
    (["config", "validate", "gpt-char", "checkpoint.every_stepss=5"], "every_steps", "every_minutes"),
    (["train", "gpt-char", "checkpoint.keep_lasts=5", "--dryrun"], "keep_last", "keep_best"),
])
def test_cli_suggests_the_closest_of_several(args: list[str], closest: str, other: str) -> None:
    exe = Path(sys.executable).with_name("stoker")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"Did you mean '{closest}'?" in proc.stderr and f"'{other}'" not in proc.stderr
