"""Real engines for the launch tests: a single-node Slurm cluster, a Docker engine, an sshd.

Each fixture is session-scoped and lazy: an engine starts the first time a test asks for it
and stops when the session ends. Every engine is a private instance: its own munge socket,
ports, state directories, key files and Docker data root under a temp dir, so it neither
needs nor touches the machine's services, and several sessions can run side by side.

The packages come from ``make engines`` (tools/engines/install.sh, root only). Where an
engine is absent the tests skip with "no engine: ..."; with ``STOKER_REQUIRE_ENGINES=1``
(set by .ci/run) that is a failure, so CI cannot pass without running them. An engine that
is installed but fails to start is always a failure, with the tail of its log.

Facts learned on this machine kind (Debian 12, slurm-wlm 22.05, docker.io 20.10, root, no
systemd, cgroup v1 mounts):
- Slurm needs ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none`` (no cgroup
  plugins). Without slurmdbd there is no accounting (``sacct`` says "Slurm accounting
  storage is disabled"), so finished jobs are kept in slurmctld for ``MinJobAge`` (an hour)
  and read with ``scontrol show job``; ``jobcomp/filetxt`` records each finished job too.
- A requeued job waits ``cred_expire`` + 1 s before it may start again (default 120 s);
  ``AuthInfo=...,cred_expire=5`` and a 2 s scheduler interval bring that to ~6 s.
- Without ``DefMemPerCPU`` a job gets the whole node's memory and jobs run one at a time.
- ``dockerd`` runs as root with ``--storage-driver vfs --iptables=false --bridge=none``
  (no overlayfs inside this sandbox, no iptables); containers run with ``--network none``.
- sshd needs ``/run/sshd`` (privilege separation directory) to exist.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "STOKER_REQUIRE_ENGINES"


# --------------------------------------------------------------------------- helpers


def no_engine(name: str, why: str = "") -> None:
    """Skip (or, under ``STOKER_REQUIRE_ENGINES=1``, fail) because an engine is absent."""
    reason = f"no engine: {name} (run `make engines` as root)"
    if why:
        reason += f": {why}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _need(name: str, binaries: list[str]) -> dict[str, str]:
    """Absolute paths of ``binaries``, or skip/fail naming what is missing."""
    found = {b: shutil.which(b) or shutil.which(b, path="/usr/sbin:/sbin") for b in binaries}
    missing = [b for b, p in found.items() if p is None]
    if missing:
        no_engine(name, "missing " + ", ".join(missing))
    if os.geteuid() != 0:
        no_engine(name, "its daemons are started as root")
    return {b: str(p) for b, p in found.items()}


def free_port() -> int:
    """A TCP port free on loopback right now (the daemon binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} was not written)"
    return "\n".join(lines[-n:])


def _wait(what: str, ready: Callable[[], bool], log: Path, proc: subprocess.Popen | None = None,
          timeout: float = 30.0) -> None:
    """Poll ``ready`` until true; fail with the daemon's log when it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} at start-up; log {log}:\n"
                        f"{_tail(log)}", pytrace=False)
        time.sleep(0.1)
    pytest.fail(f"{what} not ready after {timeout:.0f} s; log {log}:\n{_tail(log)}",
                pytrace=False)


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a daemon in the foreground of a new session, output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not go within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --------------------------------------------------------------------------- Slurm


@dataclass
class SlurmCluster:
    """A running single-node cluster; ``env`` points Slurm's commands at it."""

    root: Path
    conf: Path
    node: str
    partition: str
    cpus: int
    env: dict[str, str]
    start_s: float = 0.0

    def environ(self, **extra: str) -> dict[str, str]:
        """``os.environ`` plus this cluster's variables (for subprocesses)."""
        return {**os.environ, **self.env, **extra}

    def run(self, *args: str, check: bool = True, timeout: float = 30.0
            ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command (``sbatch``, ``squeue``...) against this cluster."""
        return subprocess.run(list(args), env=self.environ(), capture_output=True, text=True,
                              check=check, timeout=timeout)

    def job_field(self, job_id: str, name: str) -> str | None:
        """One ``Key=value`` field of ``scontrol show job`` (None once the job is forgotten)."""
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False).stdout
        for tok in out.split():
            key, _, value = tok.partition("=")
            if key == name:
                return value
        return None

    def wait_state(self, job_id: str, states: set[str], timeout: float = 60.0) -> str:
        """Wait until the job's ``JobState`` is one of ``states``; return it."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.job_field(job_id, "JobState")
            if state in states:
                return state
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} still {state} after {timeout} s, wanted {states}")


def _node_line(slurmd: str, node: str) -> tuple[str, int, int]:
    """The node's real topology and memory as ``slurmd -C`` detects them."""
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    fields = dict(tok.split("=", 1) for tok in line.split())
    fields["NodeName"] = node
    cpus, mem = int(fields["CPUs"]), int(fields["RealMemory"])
    keep = ["NodeName", "CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
            "RealMemory"]
    return " ".join(f"{k}={fields[k]}" for k in keep if k in fields), cpus, mem


def _slurm_conf(root: Path, node_line: str, cpus: int, mem: int, munge_sock: Path) -> str:
    def_mem = max(100, min(1024, mem // max(cpus, 1) // 2))
    return f"""\
# Single-node test cluster written by tests/_shared/engines.py
ClusterName=stokertest
SlurmctldHost={node_line.split()[0].split('=')[1]}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_sock},cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={def_mem}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
MinJobAge=3600
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real slurmctld + slurmd (+ munged) for this test session."""
    t0 = time.monotonic()
    bins = _need("slurm", ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol",
                           "scancel", "sacct"])
    root = Path(tempfile.mkdtemp(prefix="stoker-slurm-"))
    procs: list[subprocess.Popen] = []
    env_conf: dict[str, str] = {}
    try:
        for d in ("munge", "state", "spool", "log"):
            (root / d).mkdir()
        os.chmod(root, 0o711)
        (root / "munge").chmod(0o711)  # munged: the socket's directory must be searchable
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        sock = root / "munge" / "munge.sock"
        munge_log = root / "log" / "munged.log"
        munged = _spawn([bins["munged"], "-F", "--force", f"--key-file={key}",
                         f"--socket={sock}", f"--pid-file={root}/munge/munged.pid",
                         f"--log-file={munge_log}", f"--seed-file={root}/munge/seed"], munge_log)
        procs.append(munged)
        _wait("munged", sock.exists, munge_log, munged)

        node = socket.gethostname().split(".")[0]
        node_line, cpus, mem = _node_line(bins["slurmd"], node)
        conf = root / "slurm.conf"
        conf.write_text(_slurm_conf(root, node_line, cpus, mem, sock))
        env_conf = {"SLURM_CONF": str(conf)}
        env = {**os.environ, **env_conf}

        ctld_log = root / "log" / "slurmctld.log"
        ctld = _spawn([bins["slurmctld"], "-D", "-i"], ctld_log, env)
        procs.append(ctld)

        def ctld_up() -> bool:
            return subprocess.run(["scontrol", "ping"], env=env, capture_output=True,
                                  text=True).stdout.count("UP") > 0

        _wait("slurmctld", ctld_up, ctld_log, ctld)
        slurmd_log = root / "log" / "slurmd.log"
        slurmd = _spawn([bins["slurmd"], "-D", "-N", node], slurmd_log, env)
        procs.append(slurmd)

        def node_idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], env=env,
                                 capture_output=True, text=True).stdout
            return out.strip().startswith("idle")

        _wait("slurmd", node_idle, slurmd_log, slurmd)
        cluster = SlurmCluster(root=root, conf=conf, node=node, partition="debug", cpus=cpus,
                               env=env_conf, start_s=time.monotonic() - t0)
        yield cluster
    finally:
        if env_conf:
            # Jobs would outlive slurmd (slurmstepd is its own process): cancel them first.
            env = {**os.environ, **env_conf}
            subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip():
                time.sleep(0.2)
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- Docker


@dataclass
class DockerEngine:
    """A Docker engine the ``docker`` client reaches through ``env`` (DOCKER_HOST)."""

    docker: str
    host: str
    env: dict[str, str]
    owned: bool
    start_s: float = 0.0

    def environ(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}

    def run(self, *args: str, check: bool = True, timeout: float = 120.0,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` against this engine."""
        return subprocess.run([self.docker, *args], env=self.environ(), capture_output=True,
                              check=check, timeout=timeout, input=input,
                              text=input is None)


def _docker_answers(docker: str, env: dict[str, str]) -> bool:
    return subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], env=env,
                          capture_output=True, text=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """The machine's running Docker engine, or a private ``dockerd`` started for the session."""
    t0 = time.monotonic()
    docker = shutil.which("docker")
    if docker is None:
        no_engine("docker", "missing the docker client")
    assert docker is not None
    if _docker_answers(docker, dict(os.environ)):  # an engine already runs: use it, leave it
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        yield DockerEngine(docker, host, {"DOCKER_HOST": host}, owned=False,
                           start_s=time.monotonic() - t0)
        return
    bins = _need("docker", ["dockerd", "containerd", "runc"])
    root = Path(tempfile.mkdtemp(prefix="stoker-docker-"))
    host = f"unix://{root}/docker.sock"
    log = root / "dockerd.log"
    # vfs: no overlayfs inside this sandbox; no iptables/bridge: containers use --network none.
    proc = _spawn([bins["dockerd"], f"--data-root={root}/data", f"--exec-root={root}/exec",
                   f"--pidfile={root}/dockerd.pid", f"--host={host}", "--storage-driver=vfs",
                   "--iptables=false", "--ip6tables=false", "--bridge=none",
                   "--ip-masq=false"], log)
    env = {"DOCKER_HOST": host}
    try:
        _wait("dockerd", lambda: _docker_answers(docker, {**os.environ, **env}), log, proc,
              timeout=60)
        yield DockerEngine(docker, host, env, owned=True, start_s=time.monotonic() - t0)
    finally:
        if proc.poll() is None:
            subprocess.run([docker, "rm", "-f", "-v", *subprocess.run(
                [docker, "ps", "-aq"], env={**os.environ, **env}, capture_output=True,
                text=True).stdout.split()], env={**os.environ, **env}, capture_output=True)
        _stop(proc, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class DockerImage:
    """A local image whose root is nearly empty; the host's system, Python and venv are mounted.

    ``python`` is this test session's interpreter (the project's venv), valid inside the
    container at the same path thanks to ``mounts``.
    """

    name: str
    mounts: list[tuple[str, str]]  # (host path, container path), all read-only
    python: str
    build_s: float = 0.0
    volumes: list[str] = field(default_factory=list)

    def run_args(self) -> list[str]:
        """``docker run`` options mounting what :attr:`python` needs (read-only)."""
        args: list[str] = []
        for host, inside in self.mounts:
            args += ["-v", f"{host}:{inside}:ro"]
        return args


def _host_mounts() -> tuple[list[tuple[str, str]], list[str]]:
    """(read-only mounts, top-level symlinks to recreate) for the host's Python and venv."""
    mounts: list[tuple[str, str]] = [("/usr", "/usr")]
    links: list[str] = []
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            links.append(top)  # usr-merged: recreate the link, /usr carries the files
        elif p.is_dir():
            mounts.append((str(p), str(p)))
    wanted = {Path(sys.base_prefix).resolve(), Path(sys.prefix), REPO}
    # The venv's python is a symlink to the base interpreter; editable installs point at src.
    for extra in sorted(wanted):
        if not any(str(extra) == m or str(extra).startswith(m.rstrip("/") + "/")
                   for m, _ in mounts):
            mounts.append((str(extra), str(extra)))
    return mounts, links


def _rootfs_tar(path: Path, links: list[str]) -> None:
    """A tiny root filesystem: empty mount points, usr-merge links, /etc basics, /tmp."""
    with tarfile.open(path, "w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        for d in ("usr", "etc", "root", "proc", "sys", "dev", "run", "var", "home"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        for top in links:
            if top == "sbin":  # docker --init puts its init at /sbin/docker-init: a real
                add_dir(top)   # folder (a link would lead into the read-only /usr mount)
                continue
            info = tarfile.TarInfo(top)
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(f"/{top}")
            tar.addfile(info)
        for f in ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/ld.so.cache"):
            if os.path.isfile(f):
                tar.add(f, arcname=f.lstrip("/"))


@pytest.fixture(scope="session")
def docker_image(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory
                 ) -> DockerImage:
    """``stoker-test/hostroot``: imported from a local tar, never pulled."""
    t0 = time.monotonic()
    mounts, links = _host_mounts()
    name = "stoker-test/hostroot:latest"
    tar = tmp_path_factory.mktemp("docker-image") / "rootfs.tar"
    _rootfs_tar(tar, links)
    docker_engine.run("import", "--message", "stoker test root (host mounts)", str(tar), name)
    return DockerImage(name=name, mounts=mounts, python=sys.executable,
                       build_s=time.monotonic() - t0)


# --------------------------------------------------------------------------- SSH


@dataclass
class SshServer:
    """An sshd on loopback in front of :class:`SlurmCluster`, like a cluster's login node."""

    host: str
    port: int
    user: str
    identity: Path
    known_hosts: Path
    start_s: float = 0.0

    def ssh_args(self) -> list[str]:
        """``ssh`` options that reach this server non-interactively."""
        return ["ssh", "-p", str(self.port), "-i", str(self.identity), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "LogLevel=ERROR", f"{self.user}@{self.host}"]


@pytest.fixture(scope="session")
def sshd_localhost(slurm_cluster: SlurmCluster) -> Iterator[SshServer]:
    """A throwaway sshd on a free loopback port; key login as root, SLURM_CONF forced.

    The cluster's ``SLURM_CONF`` is set by the server (``environment=`` in authorized_keys,
    ``PermitUserEnvironment``), as a login node's own configuration would be: the client
    sends nothing.
    """
    t0 = time.monotonic()
    bins = _need("ssh", ["sshd", "ssh", "ssh-keygen"])
    root = Path(tempfile.mkdtemp(prefix="stoker-sshd-"))
    proc: subprocess.Popen | None = None
    try:
        host_key, client_key = root / "host_ed25519", root / "client_ed25519"
        for k in (host_key, client_key):
            subprocess.run([bins["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-f", str(k)],
                           check=True, capture_output=True)
        env_opts = ",".join(f'environment="{k}={v}"' for k, v in slurm_cluster.env.items())
        (root / "authorized_keys").write_text(
            f"{env_opts} {(root / 'client_ed25519.pub').read_text().strip()}\n")
        port = free_port()
        (root / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitUserEnvironment yes
StrictModes no
UsePAM no
""")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        log = root / "sshd.log"
        proc = _spawn([bins["sshd"], "-D", "-e", "-f", str(root / "sshd_config")], log)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        _wait("sshd", listening, log, proc)
        yield SshServer(host="127.0.0.1", port=port, user="root", identity=client_key,
                        known_hosts=root / "known_hosts", start_s=time.monotonic() - t0)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)
