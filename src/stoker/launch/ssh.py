"""Where scheduler commands run: this machine, or a login node over SSH.

The Slurm executor speaks to the cluster only through :class:`Shell`: a short bash script
(with optional standard input) whose output it parses. The same script runs locally under
``bash`` or remotely as ``ssh HOST bash -s``, so every command (``sbatch``, ``squeue``,
``scontrol``, ``sacct``, ``scancel``) takes one code path and one round trip, and secrets
travel on standard input, never on a command line or in a file.

OpenSSH's own client is used (``ssh -o BatchMode=yes``): it honours the user's
``~/.ssh/config``, agents and jump hosts, which a Python SSH library would not.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field

from stoker.errors import UserError

__all__ = ["LocalShell", "Shell", "SshShell", "shell_for"]


@dataclass
class Shell:
    """Runs bash scripts on this machine."""

    timeout_s: float = 60.0

    def where(self) -> str:
        return "this machine"

    def argv(self) -> list[str]:
        return ["bash", "-s"]

    def run(self, script: str, *, timeout_s: float | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` (bash, read from standard input); output captured as text."""
        timeout = timeout_s or self.timeout_s
        try:
            return subprocess.run(self.argv(), input=script, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._no_answer(f"no answer within {timeout:g} s") from None

    def _no_answer(self, why: str) -> UserError:
        return UserError(f"cannot run Slurm commands on {self.where()}: {why}")


LocalShell = Shell


@dataclass
class SshShell(Shell):
    """Runs bash scripts on a login node through OpenSSH's ``ssh``."""

    host: str = ""
    user: str | None = None
    port: int = 22
    identity: str | None = None
    options: list[str] = field(default_factory=list)
    connect_timeout_s: float = 20.0

    def where(self) -> str:
        who = f"{self.user}@{self.host}" if self.user else self.host
        return f"{who} port {self.port}"

    def argv(self) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise UserError("executor.host is set but there is no `ssh` on PATH: install "
                            "OpenSSH's client (Debian: openssh-client)")
        args = [ssh, "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={max(1, int(self.connect_timeout_s))}",
                "-o", "ServerAliveInterval=10", "-o", "StrictHostKeyChecking=accept-new"]
        if self.identity:
            args += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        for opt in self.options:
            args += ["-o", opt]
        target = f"{self.user}@{self.host}" if self.user else self.host
        return [*args, target, "bash", "-s"]

    def run(self, script: str, *, timeout_s: float | None = None
            ) -> subprocess.CompletedProcess[str]:
        res = super().run(script, timeout_s=(timeout_s or self.timeout_s)
                          + self.connect_timeout_s)
        if res.returncode == 255:  # ssh's own failure: no route, refused, auth, host key
            msg = res.stderr.strip().splitlines()
            raise self._no_answer(
                f"{msg[-1] if msg else 'ssh failed'}. Check executor.host, executor.port, "
                f"executor.user and executor.identity (ssh -p {self.port} "
                f"{shlex.quote(self.argv()[-3])} true must work without a prompt)")
        return res

    def _no_answer(self, why: str) -> UserError:
        return UserError(f"the login node {self.where()} did not answer: {why}")


def shell_for(config: object) -> Shell:
    """The shell a Slurm config talks through: SSH when ``host`` is set, else this machine."""
    host = getattr(config, "host", None)
    timeout = float(getattr(config, "ssh_timeout_s", 20.0))
    if not host:
        return Shell()
    return SshShell(host=host, user=getattr(config, "user", None),
                    port=int(getattr(config, "port", 22)),
                    identity=getattr(config, "identity", None),
                    options=list(getattr(config, "ssh_options", []) or []),
                    connect_timeout_s=timeout)
