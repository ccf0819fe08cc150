"""``${art:name,field}`` in configs resolves through the registry and records lineage."""
from __future__ import annotations

from pathlib import Path

import pytest

import stoker
from stoker import PretrainBlendsArtifact
from stoker.errors import ConfigError

omegaconf = pytest.importorskip("omegaconf")


def _resolve(cfg: dict) -> dict:
    from stoker.artifacts.resolver import install
    from stoker.config import resolvers

    assert install()
    resolvers.ensure_registered()
    from stoker.config.export import to_container

    return to_container(omegaconf.OmegaConf.create(cfg), resolve=True)


def test_art_resolver_with_default_registry(data_dir: Path) -> None:
    PretrainBlendsArtifact(path=data_dir, total_tokens=10).save("data")
    v2 = PretrainBlendsArtifact(path=data_dir, total_tokens=20).save("data")
    out = _resolve({"blend": "${art:data,path}/blend.json", "tokens": "${art:data,total_tokens}",
                    "old": "${art:data:v1,total_tokens}", "uri": "${art:data,uri}"})
    assert out["blend"] == f"{v2.path}/blend.json" and Path(out["blend"]).is_file()
    assert (out["tokens"], out["old"], out["uri"]) == (20, 10, "art://data:v2")
    from stoker.track.run import current_run

    assert {"art://data:v1", "art://data:v2"} <= set(current_run().used)


def test_art_resolver_uses_init_registry(tmp_path: Path, data_dir: Path) -> None:
    reg = stoker.init(backend="fsspec", registry_path=tmp_path / "other")
    PretrainBlendsArtifact(path=data_dir, total_tokens=5).save("d2")
    assert _resolve({"t": "${art:d2,total_tokens}"})["t"] == 5
    assert reg.resolve("d2:latest").version == 1


def test_missing_artifact_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="No artifact named 'nope'"):
        _resolve({"x": "${art:nope,path}"})


def test_missing_field_is_a_config_error(data_dir: Path) -> None:
    PretrainBlendsArtifact(path=data_dir).save("data")
    with pytest.raises(ConfigError, match="has no field 'colour'.*total_tokens"):
        _resolve({"x": "${art:data,colour}"})


@pytest.mark.integration
def test_art_reference_resolves_through_the_cli_with_the_default_registry(
    tmp_path: Path, data_dir: Path, stoker_cmd: list[str]
) -> None:
    """A fresh `stoker` process resolves ${art:...} against $STOKER_HOME with no init call."""
    import os
    import subprocess

    PretrainBlendsArtifact(path=data_dir, total_tokens=7).save("cli-data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tokens: ${art:cli-data,total_tokens}\nmissing: ${art:nope,path}\n")
    ok = subprocess.run([*stoker_cmd, "config", "show", str(cfg), "~missing"],
                        capture_output=True, text=True, env=dict(os.environ))
    assert ok.returncode == 0, ok.stderr
    assert "tokens: 7" in ok.stdout
    bad = subprocess.run([*stoker_cmd, "config", "show", str(cfg)],
                         capture_output=True, text=True, env=dict(os.environ))
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
