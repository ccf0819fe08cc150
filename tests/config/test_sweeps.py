"""Sweep expansion: Hydra's multirun grammar into the points of a cartesian product."""
from __future__ import annotations

import pytest

from stoker.config import compose
from stoker.config.overrides import parse
from stoker.config.sweeps import expand_sweep, group_options, is_sweep
from stoker.errors import ConfigError

BASE = {"seed": 0, "optim": {"lr": 0.1}, "model": {"dim": 8}}


def test_points_are_the_cartesian_product_in_order() -> None:
    points = expand_sweep(["optim.lr=1e-3,3e-3", "model.dim=16", "seed=range(1,3)"])
    assert [p.overrides for p in points] == [
        ["optim.lr=0.001", "model.dim=16", "seed=1"], ["optim.lr=0.001", "model.dim=16", "seed=2"],
        ["optim.lr=0.003", "model.dim=16", "seed=1"], ["optim.lr=0.003", "model.dim=16", "seed=2"]]
    assert [p.label for p in points][1] == "optim.lr=0.001,seed=2"
    assert [p.index for p in points] == [0, 1, 2, 3]
    # each point composes like a single run: no sweep is left in it
    for p in points:
        cfg = compose(BASE, p.overrides)
        assert cfg.model.dim == 16 and cfg.seed in (1, 2)


def test_choice_add_prefix_and_plain_overrides_pass_through() -> None:
    points = expand_sweep(["+extra=choice(a,b)", "x=@cfg.yaml", "name='a,b'"])
    assert [p.overrides for p in points] == [["+extra=a", "x=@cfg.yaml", "name='a,b'"],
                                             ["+extra=b", "x=@cfg.yaml", "name='a,b'"]]
    assert points[0].values == {"extra": "a"}
    assert not is_sweep("name='a,b'") and not is_sweep("x=[1,2]") and is_sweep("x=1,2")
    assert expand_sweep(["seed=1"])[0].values == {}


def test_glob_selects_config_group_options(tmp_path) -> None:
    (tmp_path / "model").mkdir()
    for name in ("tiny", "toy", "big"):
        (tmp_path / "model" / f"{name}.yaml").write_text("dim: 1\n")
    options = lambda key: group_options(key, [tmp_path])  # noqa: E731
    assert [p.label for p in expand_sweep(["model=glob(t*)"], options=options)] == [
        "model=tiny", "model=toy"]
    with pytest.raises(ConfigError, match=r"selects no value .*big, tiny, toy"):
        expand_sweep(["model=glob(zz*)"], options=options)


def test_continuous_sweeps_are_refused_with_every_problem() -> None:
    with pytest.raises(ConfigError) as e:
        expand_sweep(["a=interval(0,1)", "b=1,2", "c=interval(1,2)"])
    assert len(e.value.problems) == 2 and "continuous sweep" in str(e.value)


def test_run_dir_names_can_be_typed_back_as_an_override() -> None:
    p = expand_sweep(["optim.lr=1e-3,3e-3", "data.path=/a/b,/c/d"])[3]
    assert p.dir_name() == "3_optim.lr-0.003_data.path-c-d"
    op = parse(f"output_dir=runs/{p.dir_name()}")
    assert op.value == f"runs/{p.dir_name()}"
    long = expand_sweep([f"name={'x' * 80},y"])[0]
    assert long.dir_name() == "0"


def test_without_m_a_sweep_says_add_m() -> None:
    with pytest.raises(ConfigError, match=r"add -m \(--multirun\)"):
        compose(BASE, ["seed=1,2"])
