"""``@stoker.entrypoint``, ``@stoker.factory`` and ``stoker.main(fn)`` for users' scripts.

    @stoker.entrypoint
    def train(model: ModelConfig, epochs: int = 10): ...

    if __name__ == "__main__":
        stoker.main(train)

gives ``python train.py model.size=256 epochs=5``, a positional config file or
``-c FILE``, ``--dryrun``, ``--to-yaml/--to-toml/--to-json PATH``, ``--yes``, and a
``--help`` that lists every argument with its type and default plus the registered
factories for each argument's type. Exit codes: 0 ok, 1 the function failed, 2 bad input,
130 interrupted. Mistakes are reported without a traceback (``--verbose`` shows one).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from stoker.config.factories import factory  # noqa: F401 - public as stoker.factory

__all__ = ["entrypoint", "factory", "main", "run"]

_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


@dataclass
class EntrypointInfo:
    fn: Callable[..., Any]
    name: str
    help: str | None = None


def entrypoint(fn: Callable[..., Any] | None = None, *, name: str | None = None,
               help: str | None = None) -> Any:  # noqa: A002 - mirrors NeMo-Run's keyword
    """Mark ``fn`` as a command-line entrypoint; it stays callable as before."""

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        f.__stoker_entrypoint__ = EntrypointInfo(f, name or f.__name__, help)  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


@dataclass
class _Args:
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    dryrun: bool = False
    yes: bool = False
    verbose: bool = False
    help: bool = False
    to_yaml: str | None = None
    to_toml: str | None = None
    to_json: str | None = None
    detach: bool = False
    name: str | None = None
    multirun: bool = False
    parallel: str | None = None
    repl: bool = False


_VALUE_OPTS = {"-c": "config", "--config": "config", "--to-yaml": "to_yaml",
               "--to-toml": "to_toml", "--to-json": "to_json", "--name": "name",
               "--parallel": "parallel"}
_FLAG_OPTS = {"--dryrun": "dryrun", "--dry-run": "dryrun", "--yes": "yes", "-y": "yes",
              "--detach": "detach", "-m": "multirun", "--multirun": "multirun",
              "--repl": "repl",
              "--no-confirm": "yes", "--verbose": "verbose", "-v": "verbose",
              "--help": "help", "-h": "help"}


def _unknown_option(option: str) -> str:
    from stoker.config.targets import suggest

    if not option.startswith("--"):
        return f"unknown option {option}. Options: {', '.join(sorted({*_FLAG_OPTS, *_VALUE_OPTS}))}"
    hint = suggest(option, [*_FLAG_OPTS, *_VALUE_OPTS])
    return f"unknown option {option}.{hint} Arguments are set as key=value (no dashes); see --help"


def _parse_argv(argv: Sequence[str]) -> _Args:
    from stoker.config.argv import ArgvSpec, parse_argv
    from stoker.errors import UserError

    spec = ArgvSpec(values=_VALUE_OPTS, flags=_FLAG_OPTS, error=UserError, unknown=_unknown_option,
                    needs_value="{option} needs a value", config_suffixes=_SUFFIXES)
    found, overrides = parse_argv(argv, spec)
    return _Args(overrides=overrides, **found)


def _compose(fn: Callable[..., Any], a: _Args) -> Any:
    from stoker.cli.front_door import enable_artifact_references
    from stoker.config._gc import paused

    enable_artifact_references()
    with paused():  # config work only: see stoker.config._gc
        return _compose_tree(fn, a)


def _compose_tree(fn: Callable[..., Any], a: _Args) -> Any:
    from stoker.launch.builders import entrypoint_config

    return entrypoint_config(fn, a.overrides, a.config)


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{fn.__module__}.{fn.__qualname__}" + (f" (line {code.co_firstlineno})" if code else "")


def run(fn: Callable[..., Any], argv: Sequence[str] | None = None, *,
        prog: str | None = None, default_executor: str | None = None) -> int:
    """Run ``fn`` as a command with ``argv``; returns the exit code (0/1/2/130).

    ``executor=NAME`` (and ``executor.FIELD=VALUE``, ``--detach``, ``--name``) runs the
    script again elsewhere with its exported config; ``default_executor`` applies when none
    is named (a function with its own ``executor`` argument keeps it and runs here).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or Path(sys.argv[0]).name or fn.__name__
    try:
        a = _parse_argv(args)
        if a.verbose:
            os.environ["STOKER_VERBOSE"] = "1"
        if a.help:
            print_help(fn, prog)
            return 0
        kwargs = _job_arguments(fn, a)
        if kwargs is None:
            kwargs = _compose_and_route(fn, a, default_executor)
        if isinstance(kwargs, int):  # launched, exported, dry-run or declined: its exit code
            return kwargs
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI boundary maps every error to a code
        return _report_exception(e)
    try:
        result = fn(**kwargs)
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001
        return _report_exception(e)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _print_error(message: str) -> None:
    from stoker.cli.app import print_error  # typer: only when there is something to report

    print_error(message, None)


def _report_exception(e: BaseException) -> int:
    from stoker.cli.app import report_exception

    return report_exception(e)


def _job_arguments(fn: Callable[..., Any], a: _Args) -> dict[str, Any] | None:
    """A launched task's job (``script.py -c JOBDIR/config.yaml --yes executor=local``,
    :meth:`stoker.Experiment.add_entrypoint`): the arguments the launcher validated, from
    ``JOBDIR/config.resolved.json`` (:mod:`stoker.launch.resolved`), without composing
    again. None: compose as usual (any other command line, no such file, or a file that no
    longer fits: then stderr says why)."""
    if not (a.config and a.yes and a.overrides == ["executor=local"]) or a.dryrun or a.repl \
            or a.multirun or a.detach or a.name or a.parallel or a.to_yaml or a.to_toml \
            or a.to_json or "executor" in _parameters(fn):
        return None
    from stoker.launch.resolved import read_resolved

    arguments, why = read_resolved(a.config, fn)
    if arguments is None:
        if why:
            sys.stderr.write(f"stoker: {why}; composing {a.config} again\n")
            sys.stderr.flush()
        return None
    from stoker.config.schema import SignatureSchema
    from stoker.config.typed import from_resolved

    return from_resolved(arguments, SignatureSchema(fn))


def _compose_and_route(fn: Callable[..., Any], a: _Args,
                       default_executor: str | None) -> dict[str, Any] | int:
    """Compose ``fn``'s config from the command line, then launch it elsewhere, export it,
    dry-run it, open a REPL on it, or return its typed arguments to run here."""
    from stoker.cli.front_door import run_front_door
    from stoker.config.typed import to_typed

    executor = None
    if "executor" not in _parameters(fn):
        from stoker.cli.launching import split_launch

        a.overrides, executor = split_launch(a.overrides, detach=a.detach, name=a.name,
                                             default=default_executor,
                                             keep_local=a.multirun)
    parallel = _parallel(a)
    if a.multirun:
        return _sweep(fn, a, executor, parallel)
    cfg, schema = _compose(fn, a)
    if a.repl:
        from stoker.cli.repl import entrypoint_repl

        title = f"{fn.__module__}:{fn.__name__}"
        run_front_door(cfg, yes=True, title=title, schema=schema)
        return entrypoint_repl(fn, cfg, to_typed(cfg, schema), title)
    if executor is not None and not (a.to_yaml or a.to_toml or a.to_json):
        from stoker.cli.launching import launch_entrypoint

        return launch_entrypoint(fn, cfg, schema, executor, overrides=a.overrides,
                                 config=a.config, name=a.name, detach=a.detach,
                                 dryrun=a.dryrun, yes=a.yes,
                                 title=f"{fn.__module__}:{fn.__name__}")
    go = run_front_door(cfg, dryrun=a.dryrun, to_yaml=a.to_yaml, to_toml=a.to_toml,
                        to_json=a.to_json, yes=a.yes, title=f"{fn.__module__}:{fn.__name__}",
                        schema=schema)
    if not go:
        return 0
    return to_typed(cfg, schema)


def _parallel(a: _Args) -> int | None:
    """``--parallel N`` as a number (only with ``-m``)."""
    from stoker.errors import UserError

    if a.parallel is None:
        return None
    if not a.multirun:
        raise UserError("--parallel N sets how many points of a sweep run at once; add -m "
                        "and a sweep override (epochs=1,2)")
    if not a.parallel.isdigit() or int(a.parallel) < 1:
        raise UserError(f"--parallel {a.parallel}: give a whole number of tasks, 1 or more")
    return int(a.parallel)


def _sweep(fn: Callable[..., Any], a: _Args, executor: Any, parallel: int | None) -> int:
    """``-m``: one task of this script per point of the sweep."""
    from stoker.errors import UserError

    if a.repl or a.to_yaml or a.to_toml or a.to_json:
        raise UserError("--repl and --to-yaml/--to-toml/--to-json work on one config; drop -m")
    if executor is None:  # the function takes its own `executor` argument
        raise UserError(f"-m launches one task per point, but {fn.__name__} has its own "
                        "'executor' argument, so this script cannot pick an executor")
    from stoker.cli.launching import launch_sweep
    from stoker.cli.front_door import enable_artifact_references

    enable_artifact_references()
    return launch_sweep("entrypoint", fn, a.overrides, executor, name=a.name, detach=a.detach,
                        dryrun=a.dryrun, yes=a.yes, parallel=parallel, config=a.config,
                        title=f"{fn.__name__}-sweep")


def _parameters(fn: Callable[..., Any]) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def main(fn: Callable[..., Any], argv: Sequence[str] | None = None, *,
         default_executor: str | None = None) -> NoReturn:
    """Run ``fn`` from the command line and exit with its code.

    ``default_executor``: where it runs when the command line names no ``executor=``
    (a kind or an env.toml profile; default: here, in this process). The process then
    exits without a last garbage-collector pass (:mod:`stoker.cli.exiting`).
    """
    from stoker.cli.exiting import freeze_gc_at_exit

    freeze_gc_at_exit()
    sys.stdout.flush()
    code = run(fn, argv, default_executor=default_executor)
    sys.stdout.flush()
    sys.exit(code)


# ---------------------------------------------------------------------------- help
def print_help(fn: Callable[..., Any], prog: str) -> None:
    import inspect

    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    from stoker.config import schema as sch
    from stoker.config.factories import all_factories, factories_for

    console = Console(soft_wrap=False)
    from rich.markup import escape

    console.print(escape(f"Usage: {prog} [OPTIONS] [CONFIG_FILE] [key=value ...]") + "\n")
    info = getattr(fn, "__stoker_entrypoint__", None)
    console.print(f"[bold][Entrypoint][/bold] {info.name if info else fn.__name__}  "
                  f"[dim]{_where(fn)}[/dim]")
    doc = (info.help if info and info.help else inspect.getdoc(fn)) or ""
    if doc:
        console.print(doc)

    opts = Table.grid(padding=(0, 2))
    for flag, text in [
        ("CONFIG_FILE, -c, --config FILE", "YAML/TOML/JSON file with argument values"),
        ("key=value", "set an argument; nested: model.size=256; +key, ++key, ~key; key=@file.yaml[:section]"),
        ("--dryrun", "print the resolved arguments and exit"),
        ("--to-yaml / --to-toml / --to-json PATH", "export the config (re-load with -c) and exit"),
        ("--yes, -y", "skip the confirmation (only asked on a terminal)"),
        ("executor=NAME", "run elsewhere: detached, torchrun, slurm, docker or an env.toml "
                          "profile; executor.FIELD=VALUE sets its fields"),
        ("--detach / --name NAME", "do not follow the launched job / label it (stoker exp list)"),
        ("-m, --multirun", "sweep: one task per point of key=a,b / range(...) / choice(...) "
                           "/ glob(...) overrides; --parallel N runs N points at once"),
        ("--repl", "open a Python session holding cfg, the typed arguments (kwargs) and fn "
                   "instead of running"),
        ("--verbose, -v", "show Python tracebacks"),
        ("--help, -h", "show this message"),
    ]:
        opts.add_row(f"[cyan]{flag}[/cyan]", text)
    console.print(Panel(opts, title="Options", title_align="left"))

    fields = sch.SignatureSchema(fn).fields()
    args = Table.grid(padding=(0, 2))
    for name, f in fields.items():
        if f.required:
            default = "(its field defaults)" if _nested_fields(f.type) else "[red]required[/red]"
        else:
            default = escape(_short(sch.default_value(f)))
        args.add_row(f"[cyan]{name}[/cyan]", sch.type_name(f.type), default)
        for sub_name, sub in _nested_fields(f.type):
            sub_default = "required" if sub.required else escape(_short(sch.default_value(sub)))
            args.add_row(f"  {name}.{sub_name}", sch.type_name(sub.type), sub_default)
    console.print(Panel(args, title="Arguments", title_align="left"))

    registered = all_factories()
    for name, f in fields.items():
        rows = [e for e in factories_for(name, f.type)
                if e.for_key == name or (e.returns is not None and f.type is not Any
                                         and _type_known(f.type))]
        if not rows:
            continue
        t = Table.grid(padding=(0, 2))
        for e in rows:
            t.add_row(f"[green]{e.name}[/green]", e.qualname, f"line {e.line}" if e.line else "")
        console.print(Panel(t, title=f"Factories for {name}: {sch.type_name(f.type)}  "
                                     f"(select with {name}=NAME)", title_align="left"))
    del registered


def _type_known(tp: Any) -> bool:
    from stoker.config import schema as sch

    return any(m not in (str, int, float, bool) for m in sch.non_none(tp))


def _nested_fields(tp: Any) -> list[tuple[str, Any]]:
    from stoker.config import schema as sch

    members = [m for m in sch.non_none(tp) if sch.is_structured(m)]
    if len(members) != 1:
        return []
    return list((sch.fields_of(members[0]) or {}).items())


def _short(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."

