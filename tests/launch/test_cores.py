"""Tasks that run at once on this machine share its cores."""
from __future__ import annotations

from omegaconf import OmegaConf

from stoker.launch.config import DetachedConfig, SlurmConfig, TorchrunConfig
from stoker.launch.cores import concurrency, share_cores, thread_env
from stoker.launch.experiment import _Spec


def _spec(name: str, executor, cfg=None, deps=()) -> _Spec:
    return _Spec(name, "train" if cfg is not None else "script", lambda jd: [], executor, {},
                 None, list(deps), cfg)  # type: ignore[arg-type]


def test_concurrency_by_mode_graph_width_and_limit() -> None:
    deps = {"a": [], "b": [], "c": ["a", "b"], "d": ["a"], "e": ["a"]}
    assert concurrency(deps, "sequential", None) == 1
    assert concurrency(deps, "parallel", None) == 5
    assert concurrency(deps, "graph", None) == 3  # c, d, e after a and b
    assert concurrency(deps, "graph", 2) == 2
    assert concurrency({}, "graph", None) == 0


def test_parallel_trainings_get_their_share_recorded_in_the_config() -> None:
    mine = OmegaConf.create({"trainer": {"num_threads": None}})
    own = OmegaConf.create({"trainer": {"num_threads": 3}})
    specs = [_spec("a", DetachedConfig(), mine), _spec("b", DetachedConfig(), own),
             _spec("c", DetachedConfig()), _spec("d", TorchrunConfig(nproc_per_node=2)),
             _spec("e", SlurmConfig())]
    share_cores(specs, "parallel", None, cores=16)
    a, b, c, d, e = specs
    assert a.threads == 4 and a.cfg.trainer.num_threads == 4  # 16 cores / 4 at once here
    assert mine.trainer.num_threads is None  # the experiment's own config stays as added
    assert b.threads == 3 and b.cfg.trainer.num_threads == 3  # it set its own
    assert c.threads == 4 and d.threads == 2  # torchrun splits its share among 2 processes
    assert e.threads is None  # a cluster job has its own machine
    assert thread_env(a.threads) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}


def test_one_at_a_time_changes_nothing_and_never_below_one() -> None:
    specs = [_spec("a", DetachedConfig(), OmegaConf.create({"trainer": {}})),
             _spec("b", DetachedConfig())]
    share_cores(specs, "sequential", None, cores=2)
    assert [s.threads for s in specs] == [None, None]
    share_cores(specs, "parallel", None, cores=1)
    assert [s.threads for s in specs] == [1, 1]
