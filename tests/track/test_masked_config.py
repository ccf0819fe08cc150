"""Trackers get the run's config with secret-looking values masked (item 7 of issue 14)."""
from __future__ import annotations

from pathlib import Path

from stoker.config.secrets import MASK
from stoker.track.loggers import make_loggers


def test_trackers_never_receive_secret_values(tmp_path: Path) -> None:
    config = {"seed": 1, "callbacks": {"notify": {"api_token": "literal-s3cr3t", "url": "u"}},
              "data": {"tokenizer": "char"}}
    out = make_loggers(["tensorboard"], tmp_path, config)
    out.log({"loss": 1.0}, 1)
    out.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "tensorboard").rglob("*") if p.is_file())
    assert b"literal-s3cr3t" not in raw
    assert MASK.encode() in raw and b"tokenizer" in raw and b"char" in raw
    assert config["callbacks"]["notify"]["api_token"] == "literal-s3cr3t"  # caller's copy intact
