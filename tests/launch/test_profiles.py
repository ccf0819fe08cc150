"""env.toml profiles, executor selection and validation, secret masking (unit)."""
from __future__ import annotations

from pathlib import Path

import pytest

from stoker.errors import ConfigError, UserError
from stoker.launch.config import DetachedConfig, parse_executor_config
from stoker.config.secrets import MASK, mask_env, mask_tree
from stoker.launch.profiles import load_profiles, select_executor, split_executor_args

ENV_TOML = """
[base]
executor = "slurm"
account = "ml"
partition = "gpu"
env_vars = ["HF_TOKEN", "WANDB_MODE"]

[big]
extends = "base"
nodes = 4
partition = "big"

[ddp]
executor = "torchrun"
nproc_per_node = 2
"""


def _write(d: Path, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "env.toml").write_text(text)
    return d


def test_extends_inherits_then_overrides_and_cli_fields_win(tmp_path: Path) -> None:
    proj = _write(tmp_path / "proj", ENV_TOML)
    cfg = select_executor("big", ["nodes=2", "time=01:00:00"], cwd=proj)
    assert (cfg.kind, cfg.account, cfg.partition, cfg.nodes, cfg.time) == (
        "slurm", "ml", "big", 2, "01:00:00")
    assert cfg.env_vars == ["HF_TOKEN", "WANDB_MODE"]


def test_nearest_env_toml_wins_and_stoker_home_is_read(tmp_path: Path, monkeypatch) -> None:
    home = _write(tmp_path / "home", '[far]\nexecutor = "detached"\n[ddp]\nexecutor = "torchrun"\n'
                  'nproc_per_node = 1\n')
    monkeypatch.setenv("STOKER_HOME", str(home))
    proj = _write(tmp_path / "proj", ENV_TOML)
    sub = proj / "a" / "b"
    sub.mkdir(parents=True)
    profiles = load_profiles(sub)
    assert {"far", "base", "big", "ddp"} <= set(profiles)
    assert select_executor("ddp", cwd=sub).nproc_per_node == 2  # the project's, not home's
    assert select_executor("far", cwd=sub).kind == "detached"


def test_extends_cycle_is_named(tmp_path: Path) -> None:
    proj = _write(tmp_path, '[a]\nextends = "b"\nexecutor = "slurm"\n[b]\nextends = "c"\n'
                  '[c]\nextends = "a"\n')
    with pytest.raises(UserError, match=r"cycle: a -> b -> c -> a"):
        select_executor("a", cwd=proj)


def test_unknown_profile_lists_executors_and_profiles(tmp_path: Path) -> None:
    proj = _write(tmp_path, ENV_TOML)
    with pytest.raises(UserError) as e:
        select_executor("bigg", cwd=proj)
    msg = str(e.value)
    assert "local, detached, torchrun, slurm, docker" in msg
    assert "base, big, ddp" in msg and "Did you mean 'big'?" in msg


def test_profile_field_unknown_or_wrong_type_names_profile_file_and_fix(tmp_path: Path) -> None:
    proj = _write(tmp_path, '[c]\nexecutor = "slurm"\npartiton = "gpu"\nnodes = "two"\n')
    with pytest.raises(ConfigError) as e:
        select_executor("c", cwd=proj)
    msg = str(e.value)
    assert "Unknown key 'partiton'" in msg and "Did you mean 'partition'?" in msg
    assert "profile 'c'.nodes" in msg and "valid integer" in msg
    assert str(proj / "env.toml") in msg


def test_executor_fields_validate_like_config_nodes() -> None:
    with pytest.raises(ConfigError, match=r"Unknown key 'nprocs_per_node' in executor "
                                          r"\(torchrun executor\). Did you mean 'nproc_per_node'"):
        select_executor("torchrun", ["nprocs_per_node=2"])
    with pytest.raises(ConfigError, match=r"executor.nodes.*greater than or equal to 1"):
        select_executor("slurm", ["nodes=0"])
    with pytest.raises(ConfigError, match=r"executor.image: missing required value"):
        select_executor("docker")
    assert select_executor("torchrun", ["nproc_per_node=2"]).nproc_per_node == 2
    assert select_executor("slurm", ["container_mounts=[/a:/a,/b:/b]"]).container_mounts == [
        "/a:/a", "/b:/b"]


def test_split_executor_args_takes_only_executor_keys() -> None:
    rest, sel, fields = split_executor_args(["a=1", "executor=torchrun", "executor.nnodes=1",
                                             "+executor.x=2", "executors=3"])
    assert rest == ["a=1", "executors=3"] and sel == "torchrun"
    assert fields == ["nnodes=1", "x=2"]


def test_only_named_variables_reach_a_job_and_secrets_are_masked() -> None:
    environ = {"HF_TOKEN": "hf_secret", "WANDB_API_KEY": "k", "FOO": "1", "PATH": "/bin"}
    names = parse_executor_config({"kind": "slurm", "env_vars": ["HF_TOKEN", "MISSING"]})
    assert names.job_env(environ) == {"HF_TOKEN": "hf_secret"}
    table = parse_executor_config({"kind": "detached", "env_vars": {"DB_PASSWORD": "pw",
                                                                   "MODE": "x"}})
    assert table.job_env(environ) == {"DB_PASSWORD": "pw", "MODE": "x"}
    assert mask_env({"HF_TOKEN": "a", "AWS_SECRET_ACCESS_KEY": "b", "MODE": "x"}) == {
        "HF_TOKEN": MASK, "AWS_SECRET_ACCESS_KEY": MASK, "MODE": "x"}
    assert mask_tree({"env_vars": {"API_KEY": "v"}, "password": "p", "nodes": 2}) == {
        "env_vars": {"API_KEY": MASK}, "password": MASK, "nodes": 2}


def test_detached_env_keeps_pass_env_plus_named_only() -> None:
    from stoker.launch.executors.detached import DetachedExecutor
    from stoker.launch.task import Task

    ex = DetachedExecutor(DetachedConfig(env_vars=["HF_TOKEN"]))
    t = Task("t", ["-c", "pass"], Path("/tmp/x/t"), Path("/tmp"),
             env=ex.config.job_env({"HF_TOKEN": "s3cr3t"}))
    env = ex.environment(t, {"PATH": "/bin", "HF_TOKEN": "s3cr3t", "AWS_SECRET": "no",
                             "RANDOM_VAR": "no"})
    assert env == {"PATH": "/bin", "HF_TOKEN": "s3cr3t", "PYTHONUNBUFFERED": "1"}
    shown = ex.describe(t)
    assert "s3cr3t" not in shown and "HF_TOKEN='****'" in shown


def test_profile_named_after_another_executor_is_refused(tmp_path: Path) -> None:
    """A [local] profile that runs Slurm would make every job (which re-runs itself with
    executor=local) submit itself again; a [slurm] profile setting slurm defaults is fine."""
    proj = _write(tmp_path, '[local]\nexecutor = "slurm"\n[slurm]\nexecutor = "slurm"\n'
                  'partition = "gpu"\n')
    with pytest.raises(UserError, match="named after the built-in executor 'local'"):
        select_executor("local", cwd=proj)
    assert select_executor("slurm", cwd=proj).partition == "gpu"
