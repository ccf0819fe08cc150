"""Built-in recipes: config files shipped in ``stoker/recipes/``, found by name.

Each recipe file opens with a comment giving the command that runs it; the first comment
line after that is its one-line description (shown by ``stoker recipes``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stoker.errors import ConfigError

RECIPE_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
# Extra recipe directories, separated like PATH (os.pathsep); searched before the built-ins.
RECIPE_PATH_ENV = "STOKER_RECIPE_PATH"


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    path: Path
    description: str
    command: str = ""


def builtin_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "recipes"


def recipe_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(RECIPE_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, builtin_dir()]


def _header(path: Path) -> tuple[str, str]:
    """(command, description) from the leading comment lines of a recipe file."""
    comments: list[str] = []
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                s = line.strip()
                if not s:
                    if comments:
                        break
                    continue
                if not s.startswith("#"):
                    break
                comments.append(s.lstrip("#").strip())
    except OSError:
        return "", ""
    command = comments[0] if comments else ""
    for prefix in ("Run:", "run:", "Command:", "command:"):
        if command.startswith(prefix):
            command = command[len(prefix):].strip()
    description = next((c for c in comments[1:] if c), "")
    return command, description


def list_recipes() -> list[RecipeInfo]:
    """Every recipe, by name; a directory earlier in the search path shadows a later one."""
    seen: dict[str, RecipeInfo] = {}
    for d in recipe_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in RECIPE_SUFFIXES and f.is_file() and f.stem not in seen:
                command, description = _header(f)
                seen[f.stem] = RecipeInfo(f.stem, f, description, command)
    return sorted(seen.values(), key=lambda r: r.name)


def find_recipe(name: str) -> Path:
    """Path of the recipe called ``name``; ConfigError listing the known ones otherwise."""
    for d in recipe_dirs():
        for suffix in RECIPE_SUFFIXES:
            p = d / f"{name}{suffix}"
            if p.is_file():
                return p
    names = [r.name for r in list_recipes()]
    from stoker.config.targets import suggest

    hint = suggest(name, names)
    known = ", ".join(names) if names else "none"
    raise ConfigError(
        f"'{name}' is neither a config file nor a recipe.{hint} Known recipes: {known}. "
        "(`stoker recipes` lists them; a file path must exist.)")
