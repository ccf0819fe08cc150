"""Typed errors raised by library code.

Library code never prints or exits; the CLI (``stoker.cli``) turns these into messages and
exit codes. A :class:`UserError` means the user can fix something (exit 2); a
:class:`RunError` means a run failed after it started (exit 1).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

# OSErrors that say the machine, not the input or the code, failed: a full disk, a quota,
# a file size limit, an I/O error. :func:`describe` reports them without a traceback.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


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


class CheckpointSaveError(RunError, CheckpointError):
    """Saving a checkpoint failed mid-run (a full disk, a size limit, its directory removed
    under it): the run failed (exit 1), the input was fine. Still a :class:`CheckpointError`
    so callers that catch those keep working."""

    exit_code = 1


class OutputError(RunError):
    """Writing outputs failed for a reason outside the input (a full disk, a file size
    limit, an I/O error): the run failed (exit 1). Built by :func:`write_failure`."""


class ArtifactError(UserError):
    """An artifact, its name, version, alias or manifest is wrong or missing."""


class ArchiveError(UserError):
    """A model archive is missing, tampered with, unsafe, or cannot be made."""


class RegistryError(StokerError):
    """The registry backend failed or cannot guarantee a safe operation."""

    exit_code = 1


def write_failure(exc: OSError, what: str, fix: str = "") -> StokerError:
    """The typed error for an ``OSError`` raised while writing ``what`` (e.g. "the run
    directory runs/a"), so no caller prints a traceback for a full disk.

    A file standing where a directory must be, or a path that may not be written, is bad
    input (exit 2: choose another path); a full disk, a size limit or an I/O error is a
    failed run (exit 1). ``fix`` replaces the generic advice for a failed run.
    """
    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        need, got = ("file", "directory") if exc.errno == errno.EISDIR else ("directory", "file")
        return UserError(f"cannot write {what}: {reason}{where}: a {got} stands where a {need} "
                         "is needed; choose another path or move it away")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot write {what}: {reason}{where}; choose a path you can write to")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause, advice = "the disk is full", "Free space on that disk or choose another path."
    elif exc.errno == errno.EFBIG:
        cause = "a file size limit was hit (`ulimit -f` or the file system's maximum file size)"
        advice = "Raise the limit or choose another file system."
    else:
        cause, advice = "the file system failed", "Check that the disk is healthy."
    return OutputError(f"could not write {what}: {cause} ({reason}{where}). {fix or advice}")


class Interrupted(StokerError):
    """The user asked the run to stop (Ctrl-C); state was saved where possible."""

    exit_code = 130


def describe(e: BaseException) -> tuple[str, int, bool]:
    """How an error reads to a user: ``(message, exit code, show the traceback?)``.

    A :class:`StokerError` is a user mistake or an expected failure: its own message and
    exit code, no traceback (unless asked for). An ``OSError`` for a full disk, a quota, a
    size limit or an I/O error reads as :func:`write_failure` says (exit 1, no traceback).
    Anything else is a bug or a failure inside the run: ``run failed: Type: message``, exit
    code 1, with the traceback. Only the CLI prints it (``stoker.cli.app.report_exception``).
    """
    if isinstance(e, StokerError):
        return str(e), e.exit_code, False
    if isinstance(e, OSError) and e.errno in _ENVIRONMENT_ERRNOS:
        # A full disk or a failing device, met where no library code typed it: the run
        # failed (exit 1), and a traceback would only hide the one line that matters.
        failure = write_failure(e, "its output")
        return f"{failure} (run with -v for the traceback)", failure.exit_code, False
    return f"run failed: {type(e).__name__}: {e}", 1, True
