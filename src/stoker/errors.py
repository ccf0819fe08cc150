"""Typed errors raised by library code.

Library code never prints or exits; the CLI (``stoker.cli``) turns these into messages and
exit codes. A :class:`UserError` means the user can fix something (exit 2); a
:class:`RunError` means a run failed after it started (exit 1).
"""
from __future__ import annotations

from dataclasses import dataclass


class StokerError(Exception):
    """Base of every error stoker raises on purpose."""

    exit_code: int = 1


class UserError(StokerError):
    """Bad input: a config, a path, a flag. The message says what, where and how to fix it."""

    exit_code = 2


class RunError(StokerError):
    """A run started and then failed (a callback raised, a loss went NaN, a server refused)."""

    exit_code = 1


class NonFiniteError(RunError):
    """The model or optimizer state holds NaN or inf, so it was not saved as a checkpoint
    (the run failed, exit 1; the last finite checkpoint stays the latest)."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a config tree; several are reported together."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "<root>"
        if self.file:
            loc = f"{self.file}:{self.line}" if self.line else self.file
            where = f"{where} ({loc})"
        return f"{where}: {self.message}"


class ConfigError(UserError):
    """A config cannot be loaded, resolved, validated or built.

    Carries every problem found, so a user fixes them all in one pass.
    """

    def __init__(self, message: str | None = None, problems: list[ConfigProblem] | None = None):
        self.problems: list[ConfigProblem] = list(problems or [])
        if message is None:
            n = len(self.problems)
            header = f"{n} problem{'s' if n != 1 else ''} in config:"
            message = "\n".join([header, *(f"  - {p}" for p in self.problems)])
        super().__init__(message)


class DataError(UserError):
    """Input data or a prepared dataset is missing, malformed or inconsistent."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupted or does not match the model."""


class ArtifactError(UserError):
    """An artifact, its name, version, alias or manifest is wrong or missing."""


class RegistryError(StokerError):
    """The registry backend failed or cannot guarantee a safe operation."""

    exit_code = 1


class Interrupted(StokerError):
    """The user asked the run to stop (Ctrl-C); state was saved where possible."""

    exit_code = 130


def describe(e: BaseException) -> tuple[str, int, bool]:
    """How an error reads to a user: ``(message, exit code, show the traceback?)``.

    A :class:`StokerError` is a user mistake or an expected failure: its own message and
    exit code, no traceback (unless asked for). Anything else is a bug or a failure inside
    the run: ``run failed: Type: message``, exit code 1, with the traceback. Only the CLI
    prints it (``stoker.cli.app.report_exception``).
    """
    if isinstance(e, StokerError):
        return str(e), e.exit_code, False
    return f"run failed: {type(e).__name__}: {e}", 1, True
