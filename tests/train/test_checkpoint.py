"""CheckpointManager: exact round trips, crash safety, corruption, pruning, full disk."""
from __future__ import annotations

import errno
import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stoker.errors import CheckpointError
from stoker.train.checkpoint import tensors as ck
from stoker.train.checkpoint import (
    MARKER,
    CheckpointManager,
    check_model_compatible,
    load_checkpoint,
    resolve_checkpoint,
    verify_checkpoint,
)


class Tiny(nn.Module):
    def __init__(self, dim: int = 8, tie: bool = True):
        super().__init__()
        self.emb = nn.Embedding(11, dim)
        self.body = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.head = nn.Linear(dim, 11, bias=False)
        if tie:
            self.head.weight = self.emb.weight


def trained_state(seed: int = 0, steps: int = 2) -> tuple[nn.Module, torch.optim.Optimizer, dict]:
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.dim() >= 2]},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
        betas=(0.8, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(steps):
        x = torch.randint(0, 11, (4, 5))
        loss = model.head(model.body(model.emb(x))).logsumexp(-1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "trainer": {"step": steps, "epoch": 0, "batch_in_epoch": 7},
        "config": {"model": {"dim": 8}, "optim": {"lr": 1e-2, "betas": [0.8, 0.95]}, "x": None},
    }
    return model, opt, state


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).contiguous().view(torch.uint8) if t.numel() else t


def assert_same(a, b, where="state"):
    """Bitwise equality of nested state, types included."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(_bytes(a), _bytes(b)), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def test_round_trip_is_bitwise_exact_including_optimizer_int_keys(tmp_path: Path) -> None:
    _, _, state = trained_state()
    mgr = CheckpointManager(tmp_path / "checkpoints")
    path = mgr.save(2, state, metrics={"loss": 1.5})
    assert path == tmp_path / "checkpoints" / "step-00000002"
    back = mgr.load(path)
    assert_same(state, back)
    assert set(back["optimizer"]["state"]) == {0, 1, 2, 3, 4}  # int keys stay ints
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.95)  # tuples stay tuples


def test_loaded_state_resumes_training_identically(tmp_path: Path) -> None:
    """A model + AdamW restored from disk takes the same next step as the original."""
    model, opt, state = trained_state()
    mgr = CheckpointManager(tmp_path)
    back = mgr.load(mgr.save(2, state))
    model2 = Tiny()
    opt2 = torch.optim.AdamW(
        [
            {"params": [p for p in model2.parameters() if p.dim() >= 2]},
            {"params": [p for p in model2.parameters() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=1.0,
    )
    model2.load_state_dict(back["model"])
    opt2.load_state_dict(back["optimizer"])
    for m, o in ((model, opt), (model2, opt2)):
        torch.manual_seed(5)
        x = torch.randint(0, 11, (4, 5))
        m.head(m.body(m.emb(x))).logsumexp(-1).mean().backward()
        o.step()
    for (n, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert torch.equal(a, b), n


def test_odd_values_round_trip(tmp_path: Path) -> None:
    state = {
        "floats": [float("nan"), float("inf"), -float("inf"), 0.1, -0.0, 1e308],
        "keys": {1: "int", (2, 3): "tuple", None: "none", 1.5: "float", "__tensor__": "collide"},
        "nested": [{"a": (1, [2, (3,)])}],
        "bytes": b"\x00\xffraw",
        "np": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "np_scalar": np.float64(0.25),
        "bf16": torch.randn(3, 4).to(torch.bfloat16),
        "bool": torch.tensor([True, False]),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "noncontig": torch.arange(12.0).reshape(3, 4).t(),
        "big_int": 2**62 + 1,
    }
    back = CheckpointManager(tmp_path).load(CheckpointManager(tmp_path).save(1, state))
    np.testing.assert_array_equal(back.pop("np"), state.pop("np"))
    assert back.pop("np_scalar") == 0.25
    state.pop("np_scalar")
    assert back["noncontig"].shape == (4, 3)
    assert_same(state, back)


def test_tied_weights_stored_once_and_restored_to_both_names(tmp_path: Path) -> None:
    model = Tiny(tie=True)
    p = CheckpointManager(tmp_path).save(1, {"model": model.state_dict()})
    from safetensors.torch import load_file

    on_disk = load_file(str(p / "model.safetensors"))  # a standard safetensors file
    assert "emb.weight" in on_disk and "head.weight" not in on_disk
    back = load_checkpoint(p)["model"]
    assert torch.equal(back["head.weight"], model.head.weight)
    fresh = Tiny(tie=True)
    fresh.load_state_dict(back)
    assert torch.equal(fresh.head.weight, model.emb.weight)


def test_saving_and_loading_never_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every way Python, numpy and torch pickle or unpickle is closed off, while a state with
    tensors, numpy arrays and scalars, tuples and odd keys is saved and loaded back."""
    import _pickle
    import copyreg

    _, _, state = trained_state()
    state["data"] = {"perm": np.arange(7, dtype=np.int64), "w": np.ones((2, 3), np.float32),
                     "scalar": np.float64(0.5), "pair": (1, 2.5), 3: "int key"}

    def boom(*a, **k):
        raise AssertionError("pickle used by a checkpoint")

    real_np_load, real_torch_load = np.load, torch.load

    def np_load(*a, allow_pickle=False, **k):
        if allow_pickle:
            boom()
        return real_np_load(*a, allow_pickle=False, **k)

    def torch_load(*a, weights_only=None, **k):
        if weights_only is not True:
            boom()
        return real_torch_load(*a, weights_only=True, **k)

    for mod in (pickle, _pickle):
        for name in ("loads", "load", "dumps", "dump", "Unpickler", "Pickler"):
            monkeypatch.setattr(mod, name, boom)
    monkeypatch.setattr(pickle, "_Unpickler", boom)
    monkeypatch.setattr(pickle, "_loads", boom)
    monkeypatch.setattr(copyreg, "_reconstructor", boom)
    monkeypatch.setattr(np, "load", np_load)
    monkeypatch.setattr(np.lib.format, "read_array", boom)
    monkeypatch.setattr(np.lib.format, "write_array", boom)
    monkeypatch.setattr(torch, "load", torch_load)
    monkeypatch.setattr(torch, "save", boom)
    p = CheckpointManager(tmp_path).save(2, state)
    back = load_checkpoint(p)
    assert_same({k: v for k, v in state.items() if k != "data"},
                {k: v for k, v in back.items() if k != "data"})
    assert back["data"]["perm"].tolist() == list(range(7)) and back["data"]["perm"].dtype == np.int64
    assert back["data"]["w"].shape == (2, 3) and back["data"]["w"].dtype == np.float32
    assert back["data"]["scalar"] == 0.5 and back["data"]["pair"] == (1, 2.5)
    assert back["data"][3] == "int key"
    raw = b"".join(f.read_bytes() for f in p.iterdir())
    assert b"numpy" not in raw and b"\x80\x04" not in raw  # no pickle stream in any file


def test_unsupported_value_fails_before_touching_disk(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "c")
    with pytest.raises(CheckpointError, match=r"state\['callbacks'\]\.x.*object"):
        mgr.save(1, {"callbacks": {"x": object()}})
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("where", ["model.safetensors", "state.json"])
def test_corruption_is_caught_when_only_some_keys_are_loaded(tmp_path: Path, where: str) -> None:
    """eval/generate load ("model", "config") only: the files they read are still verified."""
    _, _, state = trained_state()
    p = CheckpointManager(tmp_path).save(2, state)
    f = p / where
    data = bytearray(f.read_bytes())
    if where == "state.json":  # still valid JSON: a changed digit in the config
        i = data.rindex(b"0.95")
        data[i + 3] = ord("7")
    else:
        data[-5] ^= 0x01  # a tensor byte, the header intact
    f.write_bytes(bytes(data))
    for keys in (("model", "config"), ("model",), ("config",))[: 3 if where == "state.json" else 2]:
        with pytest.raises(CheckpointError, match=f"{where} fails its crc32 check"):
            load_checkpoint(p, keys=keys)


def test_non_finite_state_is_never_saved(tmp_path: Path) -> None:
    from stoker.errors import NonFiniteError

    _, _, state = trained_state()
    mgr = CheckpointManager(tmp_path)
    good = mgr.save(2, state)
    assert json.loads((good / MARKER).read_text())["finite"] is True
    for key, poison in (("model", "body.0.weight"), ("optimizer", None)):
        bad = {**state, key: {k: v for k, v in state[key].items()}}
        if key == "model":
            t = bad["model"][poison].clone()
            t[0, 0] = math.nan
            bad["model"] = {**bad["model"], poison: t}
        else:
            st = {i: dict(s) for i, s in state["optimizer"]["state"].items()}
            first = next(iter(st))
            st[first]["exp_avg_sq"] = st[first]["exp_avg_sq"].clone().fill_(math.inf)
            bad["optimizer"] = {**state["optimizer"], "state": st}
        with pytest.raises(NonFiniteError) as ei:
            mgr.save(3, bad)
        msg = str(ei.value)
        assert f"{key}.safetensors tensor" in msg and f"last finite checkpoint is {good}" in msg
        assert ("body.0.weight" in msg and "1 NaN" in msg) if key == "model" else "inf" in msg
        assert mgr.list() == [good] and not (tmp_path / "step-00000003").exists()
    # callback state may hold inf (a best-so-far value): only model and optimizer are checked
    mgr.save(4, {**state, "callbacks": {"best": torch.tensor(math.inf)}})


def _poisoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A good checkpoint and a later one whose model holds NaN behind a valid marker."""
    from stoker.train.checkpoint import manager as mgr_mod

    _, _, state = trained_state()
    mgr = CheckpointManager(tmp_path)
    good = mgr.save(2, state)
    weights = dict(state["model"])
    weights["body.1.bias"] = torch.full_like(weights["body.1.bias"], math.nan)
    with monkeypatch.context() as m:  # a forged "finite" marker, as a hostile file would have
        m.setattr(mgr_mod, "nonfinite", lambda tensors, limit=5: [])
        bad = mgr.save(3, {**state, "model": weights})
    verify_checkpoint(bad)  # checksums and marker are valid
    return good, bad


def test_loading_refuses_non_finite_weights_naming_file_and_tensor(tmp_path: Path, monkeypatch) -> None:
    good, bad = _poisoned(tmp_path, monkeypatch)
    for keys in (None, ("model", "config")):
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(bad, keys=keys)
        msg = str(ei.value)
        assert f"{bad / 'model.safetensors'} tensor 'body.1.bias' (8 NaN of 8 values)" in msg
        assert f"last finite checkpoint before it is {good}" in msg and "--allow-nonfinite" in msg
    back = load_checkpoint(bad, allow_nonfinite=True)  # for debugging
    assert torch.isnan(back["model"]["body.1.bias"]).all()
    load_checkpoint(bad, keys=("config", "trainer"))  # no weights read: nothing to refuse


def test_load_subset_of_keys_reads_only_their_files(tmp_path: Path) -> None:
    _, _, state = trained_state()
    p = CheckpointManager(tmp_path).save(2, state)
    (p / "optimizer.safetensors").write_bytes(b"garbage")  # not needed for these keys
    part = load_checkpoint(p, keys=("model", "config"))
    assert set(part) == {"model", "config"}
    with pytest.raises(CheckpointError, match="optimizer.safetensors"):
        load_checkpoint(p)


# ---------------------------------------------------------------- latest and crash safety


def test_latest_ignores_uncommitted_and_temp_dirs(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    assert mgr.latest() is None and mgr.load_latest() is None
    mgr.save(5, {"x": torch.ones(2)})
    p10 = mgr.save(10, {"x": torch.ones(2) * 10})
    # a save that died after the rename, before the marker: a step dir without COMMITTED
    shutil.copytree(p10, tmp_path / "step-00000020")
    (tmp_path / "step-00000020" / MARKER).unlink()
    # and one that died while writing files
    (tmp_path / ".tmp-step-00000030-1-abc").mkdir()
    assert mgr.latest() == p10
    assert [p.name for p in mgr.list()] == ["step-00000005", "step-00000010"]
    assert float(mgr.load_latest()["x"][0]) == 10.0
    with pytest.raises(CheckpointError, match="no commit marker.*previous good checkpoint is .*step-00000010"):
        mgr.load(tmp_path / "step-00000020")
    # the next save sweeps the leftovers
    mgr.save(11, {"x": torch.zeros(1)})
    assert sorted(x.name for x in tmp_path.iterdir()) == [
        "step-00000005", "step-00000010", "step-00000011"
    ]


def test_marker_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the moment the marker appears, every data file is complete and renamed in place."""
    seen = {}
    real = CheckpointManager._write_marker

    def spy(self, final, marker):
        seen["files"] = sorted(os.listdir(final))
        seen["sizes_ok"] = all((final / f).stat().st_size == r["size"] for f, r in marker["files"].items())
        return real(self, final, marker)

    monkeypatch.setattr(CheckpointManager, "_write_marker", spy)
    _, _, state = trained_state()
    CheckpointManager(tmp_path).save(3, state)
    assert MARKER not in seen["files"] and "model.safetensors" in seen["files"]
    assert seen["sizes_ok"]


def test_resave_same_step_replaces_it(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(30, {"done": False})
    mgr.save(30, {"done": True})
    assert mgr.load_latest() == {"done": True}
    assert len(list(tmp_path.iterdir())) == 1


def test_killed_during_save_leaves_previous_checkpoint_loadable(tmp_path: Path) -> None:
    """kill -9 a process in the middle of saving: latest is still a complete checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    script = f"""
import torch, sys
from stoker.train.checkpoint import CheckpointManager
m = CheckpointManager({str(tmp_path)!r}, keep_last=2)
big = {{"w": torch.randn(4_000_000)}}
for step in range(1, 1000):
    m.save(step, big)
    print(step, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one committed checkpoint
        time.sleep(0.15)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    mgr = CheckpointManager(tmp_path)
    latest = mgr.latest()
    assert latest is not None
    for p in mgr.list():
        verify_checkpoint(p)
    assert mgr.load(latest)["w"].shape == (4_000_000,)


# ---------------------------------------------------------------- corruption


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> tuple[CheckpointManager, Path, Path]:
    _, _, state = trained_state()
    mgr = CheckpointManager(tmp_path / "checkpoints", keep_last=3)
    good = mgr.save(10, state)
    bad = mgr.save(20, state)
    return mgr, good, bad


def test_truncated_file_is_detected_and_previous_offered(two_checkpoints) -> None:
    mgr, good, bad = two_checkpoints
    f = bad / "optimizer.safetensors"
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size // 2)
    assert mgr.latest() == bad  # still the highest with a marker...
    with pytest.raises(CheckpointError) as ei:
        mgr.load_latest()  # ...but it is not loaded
    msg = str(ei.value)
    assert str(f) in msg and "truncated" in msg
    assert f"previous good checkpoint is {good}" in msg and f"resume={good}" in msg
    mgr.load(good)


def test_flipped_byte_is_detected(two_checkpoints) -> None:
    mgr, good, bad = two_checkpoints
    f = bad / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors fails its crc32 check") as ei:
        mgr.load(bad)
    assert str(good) in str(ei.value)


def test_flipped_byte_in_state_json_is_detected_with_sha256(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, checksum="sha256")
    p = mgr.save(1, {"trainer": {"step": 1}})
    f = p / "state.json"
    f.write_text(f.read_text().replace("1", "7"))
    with pytest.raises(CheckpointError, match="state.json.*sha256.*no earlier valid checkpoint"):
        mgr.load(p)


def test_missing_file_and_broken_marker(two_checkpoints) -> None:
    mgr, good, bad = two_checkpoints
    (bad / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        mgr.load(bad)
    (bad / MARKER).write_text("{not json")
    assert mgr.latest() == good  # an unreadable marker is no marker
    with pytest.raises(CheckpointError, match="unreadable"):
        mgr.load(bad)


def test_previous_offered_is_itself_verified(two_checkpoints) -> None:
    mgr, good, bad = two_checkpoints
    older_bad = good
    (older_bad / "state.json").write_text("{}")
    (bad / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no earlier valid checkpoint"):
        mgr.load(bad)


# ---------------------------------------------------------------- pruning


def test_keep_last(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for s in range(1, 6):
        mgr.save(s, {"s": s})
    assert [p.name for p in mgr.list()] == ["step-00000004", "step-00000005"]


def test_keep_best_never_deletes_latest_or_best(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=1, keep_best=2, best_metric="val/loss")
    losses = {1: 3.0, 2: 1.0, 3: 2.0, 4: 0.5, 5: 4.0, 6: 5.0}
    for s, v in losses.items():
        mgr.save(s, {"s": s}, metrics={"val/loss": v})
    # latest (6) + the two best (4: 0.5, 2: 1.0)
    assert [p.name for p in mgr.list()] == ["step-00000002", "step-00000004", "step-00000006"]
    assert mgr.best() == tmp_path / "step-00000004"


def test_keep_last_zero_keeps_best_and_latest_in_max_mode(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=0, best_metric="acc", best_mode="max")
    for s, v in {1: 0.2, 2: 0.9, 3: 0.4}.items():
        mgr.save(s, {}, metrics={"acc": v})
    assert [p.name for p in mgr.list()] == ["step-00000002", "step-00000003"]


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="keep_last must be >= 0"):
        CheckpointManager(tmp_path, keep_last=-1)
    with pytest.raises(CheckpointError, match="best_metric"):
        CheckpointManager(tmp_path, keep_best=2)
    with pytest.raises(CheckpointError, match="best_mode"):
        CheckpointManager(tmp_path, best_mode="up")  # type: ignore[arg-type]


# ---------------------------------------------------------------- full disk


def _enospc_after(monkeypatch: pytest.MonkeyPatch, n_ok: int) -> None:
    calls = {"n": 0}
    real = ck._write_all

    def failing(f, data, hasher):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, data, hasher)

    monkeypatch.setattr(ck, "_write_all", failing)


@pytest.mark.parametrize("n_ok", [0, 3, 6])
def test_full_disk_during_save_keeps_previous(tmp_path: Path, monkeypatch, n_ok: int) -> None:
    _, _, state = trained_state()
    mgr = CheckpointManager(tmp_path, keep_last=1)
    prev = mgr.save(10, state)
    _enospc_after(monkeypatch, n_ok)
    with pytest.raises(CheckpointError) as ei:
        mgr.save(20, state)
    msg = str(ei.value)
    assert "disk is full" in msg and f"previous checkpoint {prev} is intact" in msg
    assert sorted(x.name for x in tmp_path.iterdir()) == ["step-00000010"]  # nothing partial
    monkeypatch.undo()
    assert_same(state, mgr.load_latest())


def test_full_disk_while_writing_the_marker(tmp_path: Path, monkeypatch) -> None:
    mgr = CheckpointManager(tmp_path)
    prev = mgr.save(1, {"a": torch.ones(3)})

    def no_space(self, final, marker):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CheckpointManager, "_write_marker", no_space)
    with pytest.raises(CheckpointError, match="while writing COMMITTED"):
        mgr.save(2, {"a": torch.ones(3)})
    assert mgr.latest() == prev and not (tmp_path / "step-00000002").exists()


def test_real_full_disk_on_tiny_tmpfs(tmp_path: Path) -> None:
    from tests._shared.engines import no_engine
    from tests._shared.full_disk import small_disk

    with small_disk(tmp_path / "tiny", 2048) as mnt:
        if mnt is None:
            no_engine("a small tmpfs", "mounting one needs root and mount rights")
        mgr = CheckpointManager(mnt / "checkpoints", keep_last=5)
        prev = mgr.save(1, {"w": torch.zeros(100_000)})  # 400 KB
        with pytest.raises(CheckpointError, match="disk is full") as ei:
            mgr.save(2, {"w": torch.zeros(1_000_000)})  # 4 MB does not fit
        assert str(prev) in str(ei.value)
        assert [p.name for p in (mnt / "checkpoints").iterdir()] == ["step-00000001"]
        assert mgr.load_latest()["w"].shape == (100_000,)


# ---------------------------------------------------------------- helpers


def test_check_model_compatible_names_every_mismatch() -> None:
    model = Tiny(dim=8, tie=False)
    other = Tiny(dim=16, tie=False).state_dict()
    other["extra.weight"] = torch.zeros(1)
    del other["body.1.bias"]
    problems = check_model_compatible(model, other)
    text = "\n".join(problems)
    assert "emb.weight: checkpoint has shape (11, 16), model has shape (11, 8)" in text
    assert "body.1.bias: missing from the checkpoint" in text
    assert "extra.weight: in the checkpoint" in text
    assert check_model_compatible(model, model.state_dict()) == []


def test_resolve_checkpoint_accepts_run_dir_checkpoints_dir_or_step_dir(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "run" / "checkpoints")
    mgr.save(1, {})
    p = mgr.save(2, {})
    assert resolve_checkpoint(tmp_path / "run") == p
    assert resolve_checkpoint(tmp_path / "run" / "checkpoints") == p
    assert resolve_checkpoint(p) == p
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no committed checkpoint"):
        resolve_checkpoint(tmp_path / "empty")


def test_marker_records_metrics_and_files(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    p = mgr.save(7, {"model": {"w": torch.ones(2)}}, metrics={"loss": torch.tensor(0.5)})
    marker = json.loads((p / MARKER).read_text())
    assert marker["step"] == 7 and marker["metrics"] == {"loss": 0.5}
    assert set(marker["files"]) == {"model.safetensors", "state.json"}
    assert mgr.infos()[0].metrics == {"loss": 0.5}


def test_non_finite_metrics_and_omegaconf_config_are_saved(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"dim": 8}, "loggers": ["jsonl", "tensorboard"], "p": 1.5})
    mgr = CheckpointManager(tmp_path, keep_last=1, best_metric="eval/perplexity")
    p1 = mgr.save(1, {"config": cfg, "where": tmp_path}, metrics={"eval/perplexity": float("inf")})
    marker = json.loads((p1 / MARKER).read_text())  # strict JSON
    assert marker["metrics"] == {"eval/perplexity": "inf"}
    assert mgr.infos()[0].metrics == {"eval/perplexity": math.inf}
    assert mgr.load(p1)["where"] == str(tmp_path)
    mgr.save(2, {"config": cfg}, metrics={"eval/perplexity": 40.0})
    assert [p.name for p in mgr.list()] == ["step-00000002"]  # the better one is latest too
    back = mgr.load_latest()
    assert back["config"] == {"model": {"dim": 8}, "loggers": ["jsonl", "tensorboard"], "p": 1.5}


def test_wrapper_prefix_mismatch_gets_a_hint() -> None:
    model = Tiny(tie=False)
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    problems = check_model_compatible(model, wrapped)
    assert any("hint" in p and "'module.'" in p for p in problems)


# ---------------------------------------------------------------- format properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_keys = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.sampled_from(["__tensor__", "__dict__"]))
_trees = st.recursive(
    _leaves,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.tuples(kids, kids),
        st.dictionaries(_keys, kids, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=_trees)
def test_any_plain_tree_round_trips_exactly(tmp_path: Path, tree) -> None:
    mgr = CheckpointManager(tmp_path / "h", keep_last=0, fsync=False)
    back = mgr.load(mgr.save(1, {"t": tree, "x": torch.arange(3)}))
    assert_same({"t": tree, "x": torch.arange(3)}, back)


def test_files_are_standard_safetensors_for_every_dtype(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {
        str(dt): (torch.arange(6).reshape(2, 3) % 2).to(dt)
        for dt in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
    }
    p = CheckpointManager(tmp_path / "a").save(1, {"model": tensors})
    theirs = load_file(str(p / "model.safetensors"))
    assert_same(dict(sorted(tensors.items())), dict(sorted(theirs.items())))
    # and our reader reads what the safetensors library writes
    save_file(tensors, str(tmp_path / "lib.safetensors"))
    buf = bytearray((tmp_path / "lib.safetensors").read_bytes())
    ours = ck.parse_safetensors(tmp_path, "lib.safetensors", buf)
    assert_same(dict(sorted(tensors.items())), dict(sorted(ours.items())))


def test_full_disk_while_hashing_in_background(tmp_path: Path, monkeypatch) -> None:
    """Big files are checksummed on a helper thread; a failed write still cleans up."""
    mgr = CheckpointManager(tmp_path, keep_last=2)
    big = {"model": {"w": torch.arange(3_000_000, dtype=torch.float32)}}  # 12 MB
    prev = mgr.save(1, big)
    _enospc_after(monkeypatch, 3)
    with pytest.raises(CheckpointError, match="disk is full"):
        mgr.save(2, big)
    monkeypatch.undo()
    assert mgr.list() == [prev] and sorted(x.name for x in tmp_path.iterdir()) == [prev.name]
    assert torch.equal(mgr.load(mgr.save(3, big))["model"]["w"], big["model"]["w"])
