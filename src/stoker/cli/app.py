"""The ``stoker`` command: a thin shell that parses arguments, calls library code and maps
errors to exit codes (0 ok, 1 run failed, 2 bad input, 130 interrupted).

Each command group lives in its own module exposing ``register(app)``; those modules import
only typer at module level so that ``stoker --help`` never pays for torch or hydra.
"""
from __future__ import annotations

import importlib
import os
import sys

import typer

from stoker import __version__

# Modules that add commands to the root app, in help order.
COMMAND_MODULES = (
    "stoker.cli.train_cmd",
    "stoker.cli.generate_cmd",
    "stoker.cli.pack_cmd",
    "stoker.cli.export_cmd",
    "stoker.cli.data_cmd",
    "stoker.cli.config_cmd",
    "stoker.cli.artifacts_cmd",
    "stoker.cli.exp_cmd",
    "stoker.cli.verify_cmd",
)

_VERBOSE_ENV = "STOKER_VERBOSE"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"stoker {__version__}")
        raise typer.Exit(0)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="stoker",
        help="Reproducible ML training recipes on PyTorch.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
        rich_markup_mode=None,  # plain click help: never imports rich for `stoker --help`
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version_callback, is_eager=True,
            help="Print the version and exit.",
        ),
        verbose: bool = typer.Option(
            False, "--verbose", "-v", help="Show Python tracebacks for errors."
        ),
    ) -> None:
        if verbose:
            os.environ[_VERBOSE_ENV] = "1"

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def run_click(command, args: list[str], prog_name: str) -> int:
    """Run a click/typer command and turn every outcome into an exit code.

    Shared by the ``stoker`` command and user scripts built with ``stoker.main``.
    """
    import click

    # Typer >= 0.2x raises its own copies of click's usage errors (typer._click), which are
    # not click's classes: catch both, or a mistyped argument ends in a traceback.
    click_errors: tuple[type[BaseException], ...] = (click.exceptions.ClickException,)
    try:
        from typer._click import exceptions as typer_click

        click_errors += (typer_click.ClickException,)
    except ImportError:
        pass
    try:
        rv = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click_errors as e:
        e.show()  # type: ignore[attr-defined]
        return 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        print_error("interrupted", None)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that maps errors to exit codes
        return report_exception(e)
    return rv if isinstance(rv, int) else 0


def report_exception(e: BaseException) -> int:
    """Print an error the way a user should see it (:func:`stoker.errors.describe`) and
    return its exit code."""
    from stoker.errors import describe

    message, code, traceback_always = describe(e)
    verbose = bool(os.environ.get(_VERBOSE_ENV))
    print_error(message, e if traceback_always or verbose else None)
    return code


def print_error(message: str, exc: BaseException | None) -> None:
    if exc is not None:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    try:
        from stoker.cli.exiting import freeze_gc_at_exit

        freeze_gc_at_exit()  # first: its handler runs after every other one at exit
        args = list(sys.argv[1:] if argv is None else argv)
        command = typer.main.get_command(build_app())
        code = run_click(command, args, prog_name="stoker")
    except KeyboardInterrupt:  # Ctrl-C while the command loads: no traceback, exit 130
        print_error("interrupted", None)
        code = 130
    if argv is None:  # the `stoker` process itself (not a caller's main([...])) ends here
        _ignore_interrupts_from_now_on()
    sys.exit(code)


def _ignore_interrupts_from_now_on() -> None:
    """The command is done: a Ctrl-C during the exit handlers and interpreter teardown
    (still a second or so after a command that used torch) would only print "Exception
    ignored in atexit callback" with a traceback, or kill the process with SIGINT after
    its work succeeded. The exit code stays the command's."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    main()
