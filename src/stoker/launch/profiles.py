"""Executor profiles from ``env.toml`` and the ``executor=...`` selection on command lines.

``env.toml`` files are read from ``$STOKER_HOME/env.toml`` and from every directory between
the filesystem root and the working directory (the nearest wins for a profile of the same
name). Each table is a named profile::

    [cluster]
    executor = "slurm"
    account = "ml"
    partition = "gpu"
    env_vars = ["HF_TOKEN"]          # names copied from your environment; nothing else is

    [cluster-big]
    extends = "cluster"              # inherit, then override
    nodes = 4

``executor=cluster executor.nodes=2`` selects a profile (or a kind: local, detached,
torchrun, slurm, docker) and overrides its fields; the result is validated like any other
config node (:func:`stoker.launch.config.parse_executor_config`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from stoker.errors import ConfigError, ConfigProblem, UserError

__all__ = ["ENV_FILE", "ExecutorSpec", "Profile", "load_profiles", "profile_files",
           "resolve_profile", "select_executor", "split_executor_args"]

ENV_FILE = "env.toml"
PREFIX = "executor"


@dataclass(frozen=True)
class Profile:
    name: str
    data: dict[str, Any]
    file: Path


@dataclass
class ExecutorSpec:
    """How an executor was chosen (stored with each task so ``rerun`` chooses it again)."""

    selector: str | None = None
    overrides: list[str] = field(default_factory=list)
    base: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"selector": self.selector, "overrides": list(self.overrides), "base": self.base}


def profile_files(cwd: Path | None = None) -> list[Path]:
    """env.toml files in precedence order, weakest first: $STOKER_HOME, then root..cwd."""
    files = []
    from stoker.data.corpus import stoker_home

    home = stoker_home() / ENV_FILE
    if home.is_file():
        files.append(home.resolve())
    here = (cwd or Path.cwd()).resolve()
    for d in reversed([here, *here.parents]):
        p = d / ENV_FILE
        if p.is_file() and p.resolve() not in files:
            files.append(p.resolve())
    return files


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e}") from None


def load_profiles(cwd: Path | None = None) -> dict[str, Profile]:
    """Every profile visible from ``cwd`` (nearer files replace farther ones by name)."""
    profiles: dict[str, Profile] = {}
    for path in profile_files(cwd):
        for name, data in _read_toml(path).items():
            if not isinstance(data, dict):
                raise UserError(f"{path}: top-level key '{name}' is not a profile table; write "
                                f"[{name}] followed by executor = \"...\" and its fields")
            profiles[name] = Profile(name, dict(data), path)
    return profiles


def resolve_profile(name: str, profiles: dict[str, Profile]) -> tuple[dict[str, Any], Path]:
    """The profile's fields with ``extends`` applied (parents first); a cycle is an error."""
    chain: list[str] = []
    cur: str | None = name
    while cur is not None:
        if cur in chain:
            loop = " -> ".join([*chain[chain.index(cur):], cur])
            raise UserError(f"env.toml profiles extend each other in a cycle: {loop} "
                            f"({profiles[cur].file}); remove one of these 'extends'")
        if cur not in profiles:
            from stoker.config.targets import suggest

            raise UserError(f"profile '{chain[-1]}' extends '{cur}', which no env.toml defines "
                            f"({profiles[chain[-1]].file}).{suggest(cur, list(profiles))}")
        chain.append(cur)
        parent = profiles[cur].data.get("extends")
        if parent is not None and not isinstance(parent, str):
            raise UserError(f"profile '{cur}' ({profiles[cur].file}): extends must be a "
                            f"profile name, got {parent!r}")
        cur = parent
    merged: dict[str, Any] = {}
    for n in reversed(chain):
        data = {k: v for k, v in profiles[n].data.items() if k != "extends"}
        if "executor" in data:
            data["kind"] = data.pop("executor")
        merged.update(data)
    if "kind" not in merged:
        from stoker.launch.config import KINDS

        raise UserError(f"profile '{name}' ({profiles[name].file}) does not say which executor "
                        f"runs it; add executor = \"slurm\" (or {', '.join(KINDS)})")
    return merged, profiles[name].file


def split_executor_args(overrides: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """``[..., executor=X, executor.a=1, ...]`` -> (other overrides, X, [a=1, ...])."""
    rest: list[str] = []
    selector: str | None = None
    fields: list[str] = []
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key == PREFIX and "=" in o:
            selector = o.split("=", 1)[1].strip()
        elif key.startswith(PREFIX + "."):
            fields.append(o.lstrip("+").split(".", 1)[1])
        else:
            rest.append(o)
    return rest, selector, fields


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _apply_field_overrides(data: dict[str, Any], fields: Sequence[str]) -> None:
    for item in fields:
        if "=" not in item:
            raise UserError(f"executor.{item}: write executor.{item}=VALUE")
        key, value = item.split("=", 1)
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"executor.{key}: executor.{p} is not a mapping")
        node[parts[-1]] = _parse_value(value)


def select_executor(selector: str | None, fields: Sequence[str] = (), *,
                    base: dict[str, Any] | None = None, default: str = "local",
                    cwd: Path | None = None) -> Any:
    """The validated executor config for ``executor=<selector> executor.<field>=...``.

    ``selector``: a profile name (env.toml) or an executor kind; None means ``base`` (an
    ``executor:`` node of the config file) or else ``default``. Profiles win over kinds of
    the same name, so ``[slurm]`` in env.toml sets the defaults of ``executor=slurm``.
    """
    # Pydantic (the executor models) loads here, not with this module: a command line
    # without executor= only needs split_executor_args.
    from stoker.launch.config import KINDS, parse_executor_config

    name = selector if selector is not None else (None if base else default)
    profiles: dict[str, Profile] | None = None
    file: str | None = None
    if name is None:
        data = dict(base or {})
        if "executor" in data:
            data["kind"] = data.pop("executor")
    else:
        profiles = load_profiles(cwd)
        if name in profiles:
            data, path = resolve_profile(name, profiles)
            file = str(path)
            parse_executor_config(dict(data), where=f"profile '{name}'", file=file)
            kind = data.get("kind", data.get("executor"))
            if name in KINDS and kind != name:
                # Jobs re-run themselves with `executor=local`: a [local] profile that picked
                # another executor would make every job submit itself again, without end.
                raise UserError(
                    f"profile '{name}' in {file} is named after the built-in executor "
                    f"'{name}' but sets executor = '{kind}'. A profile named after an "
                    f"executor may only set that executor's defaults; rename the profile "
                    f"(e.g. '{name}-{kind}')")
        elif name in KINDS:
            data = {"kind": name}
        else:
            from stoker.config.targets import suggest

            names = sorted(profiles)
            prof = (f"; profiles: {', '.join(names)} (from {', '.join(str(p) for p in profile_files(cwd))})"
                    if names else "; no env.toml profiles found (put one in $STOKER_HOME/env.toml "
                    "or in your project)")
            raise UserError(f"unknown executor or profile '{name}'. Executors: "
                            f"{', '.join(KINDS)}{prof}.{suggest(name, [*KINDS, *names])}")
    _apply_field_overrides(data, fields)
    try:
        return parse_executor_config(data, where="executor", file=file)
    except ConfigError as e:
        if not fields or file is None:
            raise
        problems = [ConfigProblem(p.path, p.message, None) for p in e.problems]
        raise ConfigError(problems=problems) from None
