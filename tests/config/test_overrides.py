"""Overrides in the Hydra grammar plus @file, group options and factories."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stoker.config import compose, factories, validate
from stoker.config.export import to_container
from stoker.errors import ConfigError

BASE = {"seed": 1, "optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "model": {"dim": 8}}


def test_grammar_forms():
    cfg = compose(BASE, ["optim.lr=1e-3", "+optim.eps=1e-8", "~seed", "++model.dim=16",
                         "++model.new=x", "optim.betas=[0.8,0.9]", "+model.name='3'",
                         "+ref=${model.dim}"])
    d = to_container(cfg, resolve=True)
    assert d == {"optim": {"lr": 1e-3, "betas": [0.8, 0.9], "eps": 1e-8},
                 "model": {"dim": 16, "new": "x", "name": "3"}, "ref": 16}


def test_interpolation_stays_unresolved_in_composed_tree():
    cfg = compose(BASE, ["+ref=${model.dim}"])
    assert to_container(cfg, resolve=False)["ref"] == "${model.dim}"


def test_unknown_key_suggests_and_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as e:
        compose(BASE, ["optim.lrr=1", "sed=2", "+seed=3", "~nope"])
    msg = str(e.value)
    assert "4 problems" in msg
    assert "Unknown key 'lrr' in optim. Did you mean 'lr'?" in msg
    assert "Did you mean 'seed'?" in msg
    assert "already exists" in msg
    assert "cannot delete" in msg


def test_unknown_key_names_the_target(targets_module):
    cfg = {"optim": {"_target_": "cfgtargets.Optim", "lr": 0.1}}
    with pytest.raises(ConfigError, match=r"Unknown key 'lrr' in optim \(cfgtargets.Optim\)\. Did you mean 'lr'\?"):
        compose(cfg, ["optim.lrr=0.2"])
    # an argument of the target that the tree does not spell out can be set directly
    assert compose(cfg, ["optim.weight_decay=0.1"]).optim.weight_decay == 0.1


def test_at_file_with_section_in_every_format(tmp_path, w):
    w(tmp_path / "m.yaml", "small:\n  dim: 4\nbig:\n  dim: 64\n")
    w(tmp_path / "m.toml", "[big]\ndim = 65\n")
    w(tmp_path / "m.json", '{"dim": 66}')
    cfg = compose(BASE, [f"model=@{tmp_path}/m.yaml:big"])
    assert to_container(cfg)["model"] == {"dim": 64}
    assert compose(BASE, [f"model=@{tmp_path}/m.toml:big"]).model.dim == 65
    assert compose(BASE, [f"+other=@{tmp_path}/m.json"]).other.dim == 66


def test_at_file_errors(tmp_path, w):
    with pytest.raises(ConfigError, match="does not exist"):
        compose(BASE, ["model=@nowhere.yaml"])
    w(tmp_path / "m.yaml", "small:\n  dim: 4\n")
    with pytest.raises(ConfigError, match="section 'large' not found"):
        compose(BASE, [f"model=@{tmp_path}/m.yaml:large"])


def test_group_option_from_the_config_directory(tmp_path, w):
    w(tmp_path / "model" / "small.yaml", "dim: 4\n")
    w(tmp_path / "model" / "big.toml", "dim = 512\n")
    src = w(tmp_path / "main.yaml", "model:\n  dim: 8\n")
    assert compose(src, ["model=big"]).model.dim == 512
    with pytest.raises(ConfigError) as e:
        compose(src, ["model=huge"])
    assert "unknown option 'huge' for 'model'" in str(e.value)
    assert "big, small" in str(e.value)


def test_registered_factory_selectable_by_name():
    with factories.scoped():
        @factories.factory
        def tiny() -> dict:
            return {"dim": 2, "layers": 1}

        cfg = compose(BASE, ["model=tiny", "model.layers=3"])
        assert to_container(cfg)["model"] == {"dim": 2, "layers": 3}
        with pytest.raises(ConfigError, match="Valid options: tiny"):
            compose(BASE, ["model=tinyy"])


def test_sweeps_and_garbage_are_clear_errors():
    with pytest.raises(ConfigError, match="sweep"):
        compose(BASE, ["seed=1,2"])
    with pytest.raises(ConfigError, match="invalid override"):
        compose(BASE, ["optim.lr=[1"])
    with pytest.raises(ConfigError, match="empty override"):
        compose(BASE, [""])


_chars = st.sampled_from(list("abcxyz019_.=+~@[]{},:'\"$ -/\\*?!#%^&()") + ["${", "}", "seed", "optim", "lr", ".yaml"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_chars, max_size=12).map("".join) | st.text(max_size=12), max_size=3))
def test_random_overrides_never_raise_anything_but_config_error(overrides):
    try:
        cfg = compose(BASE, overrides)
        validate(cfg)
    except ConfigError as e:
        assert str(e)
