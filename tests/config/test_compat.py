"""The Nemotron-kit names work, and fix the kit's weaknesses."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import stoker
from stoker.errors import ConfigError


@dataclass
class Sub:
    num_shards: int = 128


@dataclass
class MyConfig:
    blend_path: Path
    output_dir: Path
    tokenizer_model: str = "nvidia/NVIDIA-Nemotron-Nano-9B-v2"
    sub: Sub = field(default_factory=Sub)


def test_cli_with_config_file_and_overrides(tmp_path, w, monkeypatch):
    monkeypatch.setenv("PWD_X", str(tmp_path))
    cfg_file = w(tmp_path / "config.toml", """
        blend_path = "${oc.env:PWD_X}/data_blend.json"
        output_dir = "out"
        [sub]
        num_shards = 4
        """)
    cfg = stoker.cli(MyConfig, config_file=cfg_file, argv=["sub.num_shards=256"],
                     exit_on_error=False)
    assert cfg.blend_path == tmp_path / "data_blend.json" and isinstance(cfg.output_dir, Path)
    assert cfg.sub.num_shards == 256
    with pytest.raises(ConfigError, match="Did you mean 'num_shards'"):
        stoker.cli(MyConfig, config_file=cfg_file, argv=["sub.num_shard=1"], exit_on_error=False)


def test_training_script_utilities(tmp_path, w):
    default = w(tmp_path / "default.yaml", "blend_path: a\noutput_dir: b\n")
    path, overrides = stoker.parse_config_and_overrides(
        ["--config", str(default), "tokenizer_model=x"], default_config=tmp_path / "other.yaml")
    assert path == default and overrides == ["tokenizer_model=x"]
    cfg = stoker.apply_hydra_overrides(stoker.load_omegaconf_yaml(path), overrides, schema=MyConfig)
    typed = stoker.omegaconf_to_dataclass(cfg, MyConfig)
    assert typed.tokenizer_model == "x" and typed.sub == Sub()
    with pytest.raises(ConfigError, match="Unknown key"):
        stoker.apply_hydra_overrides(cfg, ["not_a_key=1"])  # never swallowed


def test_config_manager_round_trip(tmp_path, w):
    mgr = stoker.ConfigManager(MyConfig)
    src = w(tmp_path / "c.json", '{"blend_path": "a", "output_dir": "b"}')
    cfg = mgr.load(src, ["sub.num_shards=3"])
    mgr.save(cfg, tmp_path / "c.yaml")
    assert mgr.parse(["-c", str(tmp_path / "c.yaml")]).sub.num_shards == 3


def test_builders_make_plain_trees():
    cfg = stoker.Config("torch.nn.Linear", in_features=2, out_features=3)
    assert dict(cfg) == {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3}
    p = stoker.Partial("torch.optim.AdamW", lr=0.1)
    assert p._partial_ is True


def test_stoker_cli_stays_callable_after_the_cli_package_is_imported(tmp_path, w):
    import stoker.cli.app  # noqa: F401  (rebinds the name `stoker.cli` to the package)

    cfg_file = w(tmp_path / "config.toml", 'blend_path = "b.json"\noutput_dir = "out"\n')
    cfg = stoker.cli(MyConfig, config_file=cfg_file, argv=["sub.num_shards=2"],
                     exit_on_error=False)
    assert cfg.sub.num_shards == 2
