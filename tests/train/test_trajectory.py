"""Which resume changes the trajectory rule lets through (unit level; the CLI tests are in
test_resume_refusal.py and the torchrun ones in tests/launch/test_torchrun.py)."""
from __future__ import annotations

from stoker.train.trajectory import compare, refused_changes

BASE = {"data.batch_size": 4, "trainer.grad_accum": 1, "world_size": 2, "optim.lr": 0.003,
        "trainer.max_steps": 10}


def _refused(new: dict, allow: tuple[str, ...] = ()) -> list[str]:
    cur = {**BASE, **new}
    return [c.key for c in refused_changes(compare(BASE, cur), allow, recorded=BASE,
                                           current=cur)]


def test_the_same_global_batch_over_other_processes_is_free() -> None:
    assert _refused({"data.batch_size": 8, "world_size": 1}) == []
    assert _refused({"data.batch_size": 2, "world_size": 4, "trainer.max_steps": 20}) == []


def test_another_global_batch_or_split_by_accumulation_is_refused() -> None:
    assert _refused({"world_size": 1}) == ["world_size"]
    assert _refused({"data.batch_size": 8}) == ["data.batch_size"]
    # accumulation sums micro-batches in another order: not a mere re-split
    assert _refused({"data.batch_size": 2, "trainer.grad_accum": 2, "world_size": 2}) \
        == ["data.batch_size", "trainer.grad_accum"]
    assert _refused({"data.batch_size": 8, "world_size": 1, "optim.lr": 0.01}) == ["optim.lr"]
    assert _refused({"world_size": 1}, allow=("world_size",)) == []
