"""Checkpoints at scale: sharded (DCP) saves under FSDP2, async saves, resharding on resume.

Unit tests drive CheckpointManager in this process (DCP without a process group); the
integration tests run `stoker train` through torchrun on CPU (gloo).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from train_helpers import read_metrics, run_cli, tiny_overrides

from stoker.errors import CheckpointError
from stoker.train.checkpoint import CheckpointManager, load_checkpoint, read_marker

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
STOKER = [str(Path(sys.executable).with_name("stoker"))]
COMMON = ["trainer.max_steps=6", "trainer.eval_every=3", "checkpoint.every_steps=3",
          "data.batch_size=4", "model.dropout=0.2", "trainer.distributed=fsdp2"]


def _state() -> dict:
    torch.manual_seed(0)
    return {"model": {"w": torch.randn(8, 4), "b": torch.zeros(4)},
            "optimizer": {"state": {"w": {"step": torch.tensor(3.0), "exp_avg": torch.ones(8, 4)}},
                          "param_groups": [{"lr": 0.1, "params": ["w", "b"]}]},
            "trainer": {"step": 1}, "rng": {"torch": torch.arange(5, dtype=torch.uint8)}}


def test_sharded_save_in_one_process_round_trips_and_lists_every_dcp_file(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path / "ckpt", fsync=False)
    path = mgr.save_sharded(1, _state(), {"loss": 1.0})
    marker = read_marker(path)
    assert marker["sharded"]["world_size"] == 1
    on_disk = {f"dcp/{p.name}" for p in (path / "dcp").iterdir()}
    assert on_disk == {f for f in marker["files"] if f.startswith("dcp/")} >= {"dcp/.metadata"}
    back = load_checkpoint(path)
    want = _state()
    assert back["model"]["w"].equal(want["model"]["w"])
    assert back["optimizer"]["state"]["w"]["exp_avg"].equal(want["optimizer"]["state"]["w"]["exp_avg"])
    assert back["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]
    assert back["rng"]["torch"].equal(want["rng"]["torch"])
    # eval/generate read only some keys: the optimizer's DCP entries are not needed
    assert set(load_checkpoint(path, keys=("model",))) == {"model"}


class _Boom:
    def __reduce__(self):  # noqa: D105 - what a hostile .metadata would run when unpickled
        return (os.system, ("touch PWNED",))


def test_dcp_metadata_is_checked_before_it_is_unpickled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    mgr = CheckpointManager(tmp_path / "ckpt", fsync=False)
    path = mgr.save_sharded(1, _state())
    meta = path / "dcp" / ".metadata"
    meta.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(CheckpointError, match=r"\.metadata (has \d+ bytes|fails its crc32)"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()
    # a forged marker (checksum recomputed) still cannot run code: the unpickler refuses
    from stoker.train.checkpoint.checksums import file_record

    marker = json.loads((path / "COMMITTED").read_text())
    marker["files"]["dcp/.metadata"] = file_record(meta, "crc32")
    (path / "COMMITTED").write_text(json.dumps(marker))
    with pytest.raises(CheckpointError, match="not allowed in DCP metadata"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_damaged_shard_file_is_reported(tmp_path: Path) -> None:
    path = CheckpointManager(tmp_path / "ckpt", fsync=False).save_sharded(1, _state())
    shard = next((path / "dcp").glob("__0_*.distcp"))
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp fails its crc32 check"):
        load_checkpoint(path)


def test_background_save_stages_a_copy_and_commits_only_when_written(tmp_path: Path,
                                                                      monkeypatch) -> None:
    import threading

    from stoker.train.checkpoint import manager as manager_mod

    gate = threading.Event()
    real = manager_mod.write_bytes

    def slow_write_bytes(*a, **kw):  # hold the writer thread until the test lets it go
        gate.wait(10)
        return real(*a, **kw)

    monkeypatch.setattr(manager_mod, "write_bytes", slow_write_bytes)
    mgr = CheckpointManager(tmp_path / "ckpt", fsync=False)
    state = _state()
    want = state["model"]["w"].clone()
    path = mgr.save(1, state, background=True)
    state["model"]["w"].add_(1.0)  # training goes on and changes the weights in place
    assert mgr.pending() == path and mgr.latest() is None and mgr.poll() is None
    gate.set()
    assert mgr.wait() == path and mgr.latest() == path and mgr.pending() is None
    assert load_checkpoint(path)["model"]["w"].equal(want)  # the staged copy was written


def test_background_saves_reuse_one_staging_buffer_without_mixing_steps(tmp_path: Path) -> None:
    """The staging tensors are reused from one background save to the next (no fresh GB
    per save), and each checkpoint still holds the weights of its own step."""
    mgr = CheckpointManager(tmp_path / "ckpt", keep_last=3, fsync=False)
    state = _state()
    wanted = {}
    for step in (1, 2, 3):
        wanted[step] = state["model"]["w"].clone()
        mgr.save(step, state, background=True)
        state["model"]["w"].add_(1.0)
    mgr.wait()
    staged = mgr._staging[("model", "w")]
    assert staged.data_ptr() != state["model"]["w"].data_ptr() and staged.equal(wanted[3])
    for step, w in wanted.items():
        assert load_checkpoint(mgr.path_for(step))["model"]["w"].equal(w), step


def test_background_save_of_a_nonfinite_state_is_never_written(tmp_path: Path) -> None:
    """The finite check of a background save runs on the writer thread, on the staged copy:
    the error comes from the next wait, and nothing of that step is committed."""
    from stoker.errors import NonFiniteError

    mgr = CheckpointManager(tmp_path / "ckpt", fsync=False)
    good = mgr.save(1, _state())
    bad = _state()
    bad["model"]["w"][0] = float("nan")
    mgr.save(2, bad, background=True)
    with pytest.raises(NonFiniteError, match=r"tensor 'w'.*last finite checkpoint is .*step-00000001"):
        mgr.wait()
    assert mgr.latest() == good and not mgr.path_for(2).exists()
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")]


def test_async_with_a_sharded_format_needs_fsdp2(stoker_cmd, tiny_data: Path,
                                                 tmp_path: Path) -> None:
    proc = run_cli(stoker_cmd, "train", "gpt-char",
                   *tiny_overrides(tiny_data, tmp_path / "r"), "checkpoint.format=sharded",
                   "checkpoint.async=true", "trainer.distributed=ddp", "--yes")
    assert proc.returncode == 2, proc.stderr
    assert "checkpoint.format=sharded" in proc.stderr and "trainer.distributed=fsdp2" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


# ------------------------------------------------------------------ through torchrun
def _torchrun(n: int, out: Path, data: Path, *extra: str, env: dict | None = None,
              wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [TORCHRUN, "--nproc_per_node", str(n), "--standalone", "-m", "stoker", "train",
           "gpt-char", *tiny_overrides(data, out, *COMMON), *extra, "--yes"]
    e = dict(env or os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    if not wait:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300,
                          start_new_session=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out) if "loss" in r]


# Holds DCP's writer at step 6 (after its files are written, before they are reported), so
# the test can kill -9 the job in the middle of an async save.
_HOLD = textwrap.dedent("""
    import os, time
    from stoker.train.checkpoint import sharded
    _real = sharded._records
    def _records(dcp_dir, rank, algo):
        if "step-00000006" in str(dcp_dir):
            with open(os.environ["STOKER_TEST_FLAG"] + str(rank), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(120)
        return _real(dcp_dir, rank, algo)
    sharded._records = _records
""")


@pytest.fixture(scope="module")
def async_runs(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-process FSDP2 run with async sharded checkpoints, and one killed -9 while its
    step-6 save was being written."""
    root = tmp_path_factory.mktemp("scale")
    whole, killed = root / "whole", root / "killed"
    _torchrun(2, whole, tiny_data, "checkpoint.async=true")
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOLD)
    flag = root / "writing-"
    env = dict(os.environ, STOKER_TEST_FLAG=str(flag),
               PYTHONPATH=os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    proc = _torchrun(2, killed, tiny_data, "checkpoint.async=true", env=env, wait=False)
    try:
        deadline = time.monotonic() + 240
        while not all(Path(f"{flag}{r}").exists() and Path(f"{flag}{r}").read_text()
                      for r in (0, 1)):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the async save never started"
            time.sleep(0.1)
        for r in (0, 1):  # torchrun's workers run in sessions of their own
            os.kill(int(Path(f"{flag}{r}").read_text()), signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return {"whole": whole, "killed": killed}


@pytest.mark.integration
def test_fsdp2_saves_sharded_and_the_marker_lists_every_ranks_files(async_runs) -> None:
    step = async_runs["whole"] / "checkpoints" / "step-00000006"
    marker = read_marker(step)
    assert marker["sharded"]["world_size"] == 2
    for r in (0, 1):
        assert f"dcp/__{r}_0.distcp" in marker["files"]
        assert f"dcp/__{r}_0.distcp" in marker["sharded"]["ranks"][r]["files"]
    assert "model.safetensors" not in marker["files"]  # nothing was gathered to one rank


@pytest.mark.integration
def test_kill_9_during_async_save_keeps_the_previous_latest_and_resumes_bitwise(
        async_runs, tiny_data: Path) -> None:
    killed, whole = async_runs["killed"], async_runs["whole"]
    ckpts = killed / "checkpoints"
    assert read_marker(ckpts / "step-00000003") is not None
    assert not (ckpts / "step-00000006" / "COMMITTED").exists()  # written, never committed
    from stoker.train.checkpoint import find_latest

    assert find_latest(ckpts) == ckpts / "step-00000003"
    _torchrun(2, killed, tiny_data, "checkpoint.async=true")
    assert _losses(killed)[-3:] == _losses(whole)[-3:] and len(_losses(whole)) == 6
    a = load_checkpoint(whole / "checkpoints" / "step-00000006")
    b = load_checkpoint(ckpts / "step-00000006")
    assert a["model"].keys() == b["model"].keys()
    assert all(a["model"][k].equal(b["model"][k]) for k in a["model"])
    oa, ob = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(oa[p][s].equal(ob[p][s]) for p in oa for s in oa[p])


def _copy_at_step_3(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src / "checkpoints" / "step-00000003", dst / "checkpoints" / "step-00000003")


@pytest.mark.integration
@pytest.mark.parametrize("procs", [1, 3])
def test_sharded_checkpoint_resumes_at_another_world_size(async_runs, tiny_data: Path,
                                                          tmp_path: Path, procs: int) -> None:
    """Saved by 2 processes, resumed by 1 (consolidated) or 3 (DCP reshards): the loss
    continues from where it was, not from a fresh model."""
    out = tmp_path / "run"
    _copy_at_step_3(async_runs["whole"], out)
    # another number of processes at the same batch_size is another global batch: a
    # change of the trajectory, so the resume says it on purpose
    allow = "allow_changes=[world_size]"
    if procs == 1:
        run_cli(STOKER, "train", "gpt-char", *tiny_overrides(tiny_data, out, *COMMON),
                allow, "--yes", check=True)
    else:
        _torchrun(procs, out, tiny_data, allow)
    got = dict(_losses(out))
    want = dict(_losses(async_runs["whole"]))
    assert sorted(got) == [4, 5, 6]  # resumed at step 3
    assert abs(got[4] - want[4]) < 0.15 and got[4] < want[1] - 0.1
    assert read_marker(out / "checkpoints" / "step-00000006") is not None


@pytest.mark.integration
def test_full_state_checkpoint_loads_into_fsdp2_and_back(tiny_data: Path, tmp_path: Path) -> None:
    """A single-process (full-state, index-keyed optimizer) checkpoint resumes under FSDP2,
    and the sharded checkpoint FSDP2 then writes resumes in a single process."""
    out = tmp_path / "run"
    run_cli(STOKER, "train", "gpt-char", *tiny_overrides(tiny_data, out, *COMMON),
            "trainer.stop_after_steps=3", "--yes", check=True)
    assert "model.safetensors" in read_marker(out / "checkpoints" / "step-00000003")["files"]
    refused = subprocess.run(  # 1 -> 2 processes at batch_size 4: global batch 4 -> 8
        [TORCHRUN, "--nproc_per_node", "2", "--standalone", "-m", "stoker", "train",
         "gpt-char", *tiny_overrides(tiny_data, out, *COMMON), "trainer.stop_after_steps=5",
         "--yes"], capture_output=True, text=True, timeout=300, start_new_session=True,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0"), check=False)
    assert refused.returncode != 0 and "world_size: 1 -> 2" in refused.stderr, refused.stderr
    assert "global batch: 4 -> 8" in refused.stderr
    assert [s for s, _ in _losses(out)] == [1, 2, 3]  # nothing was written
    _torchrun(2, out, tiny_data, "trainer.stop_after_steps=5", "checkpoint.every_steps=5",
              "allow_changes=[world_size]")
    assert read_marker(out / "checkpoints" / "step-00000005")["sharded"]["world_size"] == 2
    run_cli(STOKER, "train", "gpt-char", *tiny_overrides(tiny_data, out, *COMMON),
            "checkpoint.every_steps=5", "allow_changes=[world_size]", "--yes", check=True)
    losses = _losses(out)
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6]
    assert losses[-1][1] < losses[0][1]


@pytest.mark.integration
def test_eval_generate_and_pack_read_a_sharded_checkpoint_in_one_process(
        async_runs, tmp_path: Path) -> None:
    run = async_runs["whole"]
    gen = run_cli(STOKER, "generate", "text", "--checkpoint", str(run), "--prompt", "def ",
                  "-n", "6", check=True)
    assert gen.stdout.startswith("def ") and "Warning" not in gen.stderr
    ev = run_cli(STOKER, "eval", str(run), check=True)
    assert "eval/loss" in ev.stdout
    run_cli(STOKER, "pack", "-c", str(run), "-o", str(tmp_path / "m.stoker"), check=True)
    gen2 = run_cli(STOKER, "generate", "text", "--checkpoint", str(tmp_path / "m.stoker"),
                   "--prompt", "def ", "-n", "6", check=True)
    assert gen2.stdout == gen.stdout  # the archive holds the consolidated weights


@pytest.mark.integration
@pytest.mark.parametrize("background", ["false", "true"])
def test_each_rank_saves_with_less_memory_than_the_full_state(tiny_data: Path, tmp_path: Path,
                                                              background: str) -> None:
    """Peak resident memory growth of each rank during its save (recorded in the marker)
    stays below the size of the whole model+optimizer state (~39 MB here)."""
    out = tmp_path / "mem"
    _torchrun(2, out, tiny_data, "model.dim=256", "model.n_layers=4", "model.n_heads=4",
              "model.n_kv_heads=4", "trainer.max_steps=1", f"checkpoint.async={background}",
              "model.dropout=0.0")
    marker = read_marker(out / "checkpoints" / "step-00000001")
    full = sum(v["size"] for k, v in marker["files"].items() if k.startswith("dcp/"))
    assert full > 30e6
    peaks = [r["save_peak_bytes"] for r in marker["sharded"]["ranks"]]
    assert all(p is not None and p < 0.75 * full for p in peaks), (peaks, full)
