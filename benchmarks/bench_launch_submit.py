"""Command to job running, and experiment status latency: stoker beside NeMo-Run, same run.

    bash benchmarks/peers/setup_nemo_run.sh      # once: NeMo-Run in a benchmark-only venv
    python benchmarks/bench_launch_submit.py [--runs 5] [--slurm-runs 3] [--no-slurm] [--quick]

"Running" means the same for both: the user's code has started. The job is a function
``job(marker)`` whose first statement writes ``time.time()`` into a marker file; the figure
is that time minus the moment the launching command was started (a fresh process, as a user
types it). Each repetition runs stoker and NeMo-Run back to back (interleaved), so drift
hits both alike; medians are printed with their spread and the load average.

(a) detached, on this machine: stoker runs the ``@stoker.entrypoint`` script with
    ``executor=detached --yes`` (the job runs the script again with its exported config);
    NeMo-Run runs the same function as ``run.Partial`` with ``run.LocalExecutor`` through
    ``run.run(..., detach=True)`` (its job: ``python -m nemo_run.core.runners.fdl_runner``),
    and, as its cheapest path, a plain ``run.Script`` of a stdlib-only file. NeMo-Run cannot
    detach from a local job (it says so and waits), so its command returns when the job
    ends; "to running" is still comparable. Also ``stoker train gpt-char`` (tiny) with
    ``executor=detached`` to its first training step, stoker only (no NeMo-Run recipe).
(b) Slurm, the tests' private single-node cluster: stoker ``executor=slurm --detach`` vs NeMo-Run's
    ``SlurmExecutor`` with a ``LocalTunnel``; both ship the code of the same git project
    (stoker: git archive + uncommitted changes; NeMo-Run: ``GitArchivePackager``). Raw
    ``sbatch --wrap`` of the stdlib marker script is printed as the floor.
(c) ``stoker exp status ID`` vs ``nemo experiment status ID`` on finished detached/local and
    Slurm experiments (fresh processes, median).
(d) Which heavy modules the submitting process imports (``-X importtime``): torch must not
    be among them.
Without the peer's virtualenv, NeMo-Run's figures from DESIGN.md section 6 are printed
instead, labelled as such; without Slurm, (b) is skipped, saying why.
``--quick``: one repetition of each launch, status timed twice.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402
from _launch_common import (  # noqa: E402
    PEER_PYTHON,
    PEER_SETUP,
    load,
    med,
    peer_version,
    read_marker,
    slurm_cluster,
    spread,
    stoker_cmd,
    stoker_env,
    tiny_char_data,
    tiny_overrides,
    wait_for,
)

DESIGN_IMPORT_S = 2.0  # DESIGN.md section 6: `import nemo_run` 2.0 s, --help 2.0-2.6 s
STATUS_RUNS = {"stoker": 7, "stoker slurm": 5, "peer": 3}  # --quick: 2 each

STOKER_JOB = '''\
"""The benchmark's job as a stoker entrypoint: the user's code writes a marker first."""
import time

import stoker


@stoker.entrypoint
def job(marker: str = "marker.txt") -> None:
    t = time.time()
    with open(marker, "w") as f:
        f.write(f"{t!r}\\n")
    print("job started", t, flush=True)


if __name__ == "__main__":
    stoker.main(job)
'''

PEER_JOB = '''\
"""The same job for NeMo-Run (run.Partial(job, marker=...))."""
import time


def job(marker: str = "marker.txt") -> None:
    t = time.time()
    with open(marker, "w") as f:
        f.write(f"{t!r}\\n")
    print("job started", t, flush=True)
'''

PLAIN_JOB = '''\
"""The job as a plain stdlib script (NeMo-Run's run.Script; raw sbatch)."""
import sys
import time

t = time.time()
with open(sys.argv[1], "w") as f:
    f.write(f"{t!r}\\n")
print("job started", t, flush=True)
'''

PEER_LAUNCH = '''\
"""Launch the job with NeMo-Run: MODE (partial|script) WHERE (local|slurm) MARKER."""
import os
import sys

import nemo_run as run

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
from peer_job import job  # noqa: E402

mode, where, marker = sys.argv[1:4]
if mode == "partial":
    task = run.Partial(job, marker=marker)
else:
    task = run.Script(path=os.path.join(here, "plain_job.py"), entrypoint="python",
                      args=[marker])
if where == "local":
    executor = run.LocalExecutor(env_vars={"PYTHONPATH": here})
else:
    executor = run.SlurmExecutor(account="bench", partition=os.environ["BENCH_PARTITION"],
                                 time="00:10:00", tunnel=run.LocalTunnel(job_dir=""),
                                 packager=run.GitArchivePackager(),
                                 env_vars={"PYTHONPATH": here})
run.run(task, executor=executor, name="bench", detach=True, tail_logs=False)
'''


def git_project(root: Path) -> Path:
    """A git work tree holding the jobs (both tools ship code from git)."""
    root.mkdir(parents=True)
    for name, text in (("stoker_job.py", STOKER_JOB), ("peer_job.py", PEER_JOB),
                       ("plain_job.py", PLAIN_JOB), ("peer_launch.py", PEER_LAUNCH)):
        (root / name).write_text(text)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench jobs"], cwd=root, check=True)
    return root


class Bench:
    def __init__(self, work: Path, project: Path, peer: bool):
        self.work, self.project, self.peer = work, project, peer
        self.senv = stoker_env(work / "stoker-home", OMP_NUM_THREADS="1")
        self.penv = dict(os.environ)
        self.penv["PATH"] = f"{PEER_PYTHON.parent}{os.pathsep}{self.penv['PATH']}"
        self.penv["NEMORUN_HOME"] = str(work / "nemorun-home")
        self.penv.pop("PYTHONPATH", None)
        self.n = 0

    def marker(self) -> Path:
        self.n += 1
        return self.work / "markers" / f"m{self.n}.txt"

    def launch(self, argv: list[str], env: dict[str, str], marker: Path, pattern: str,
               timeout: float = 120) -> tuple[float, float, str]:
        """(seconds to the job's marker, seconds to the command's return, experiment id)."""
        marker.parent.mkdir(exist_ok=True)
        t0 = time.time()
        proc = subprocess.run(argv, cwd=self.project, env=env, capture_output=True, text=True,
                              timeout=timeout)
        returned = time.time() - t0
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[:4]} exited {proc.returncode}:\n{out[-3000:]}")
        found = re.search(pattern, out)
        exp_id = found.group(1) if found else ""
        mark = read_marker(marker, timeout)
        if mark is None:
            raise RuntimeError(f"{argv[:4]}: the job never wrote {marker}; output:\n"
                               f"{out[-3000:]}")
        return mark - t0, returned, exp_id

    def stoker(self, executor: str, extra_env: dict[str, str] | None = None
               ) -> tuple[float, float, str]:
        m = self.marker()
        # --detach: return once submitted, like NeMo-Run's run.run(detach=True) (implied by
        # executor=detached; without it a Slurm launch follows the job's log to its end)
        return self.launch([sys.executable, "stoker_job.py", f"marker={m}", f"executor={executor}",
                            "--detach", "--yes"], {**self.senv, **(extra_env or {})}, m,
                           r"launched experiment (\S+)")

    def nemo(self, mode: str, where: str, extra_env: dict[str, str] | None = None
             ) -> tuple[float, float, str]:
        m = self.marker()
        return self.launch([str(PEER_PYTHON), "peer_launch.py", mode, where, str(m)],
                           {**self.penv, **(extra_env or {})}, m,
                           r"Experiment Status for\s+(\S+)")

    def wait_stoker_done(self, exp_id: str, extra_env: dict[str, str] | None = None) -> None:
        def done() -> bool:
            out = subprocess.run([*stoker_cmd(), "exp", "status", exp_id], capture_output=True,
                                 text=True, env={**self.senv, **(extra_env or {})}).stdout
            return " state SUCCEEDED" in out or " state FAILED" in out

        wait_for(done, 120, poll=1.0)  # each poll is a fresh process: not too often

    def status_times(self, argv: list[str], env: dict[str, str], runs: int) -> list[float]:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.run(argv, cwd=self.project, env=env, capture_output=True,
                                  text=True, timeout=120)
            times.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise RuntimeError(f"{argv} exited {proc.returncode}: "
                                   f"{(proc.stdout + proc.stderr)[-2000:]}")
        return times


def ratio(peer: float, ours: float) -> str:
    return f"{peer / ours:5.1f}x" if ours > 0 else "n/a"


def imported_heavy(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[list[str], float]:
    """Top-level heavy packages the submitting process imported, and its wall time."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    heavy = ("torch", "numpy", "safetensors", "tokenizers", "transformers")
    mods = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            top = name.split(".")[0]
            if top in heavy:
                mods.add(top)
    return sorted(mods), wall


def run_local(b: Bench, runs: int, data: Path) -> dict[str, list]:
    res: dict[str, list] = {k: [] for k in ("s_run", "s_ret", "p_run", "p_ret", "q_run", "q_ret",
                                            "t_run", "t_ret", "s_ids", "p_ids")}
    for i in range(runs):
        run_s, ret_s, exp_id = b.stoker("detached")
        res["s_run"].append(run_s)
        res["s_ret"].append(ret_s)
        res["s_ids"].append(exp_id)
        b.wait_stoker_done(exp_id)
        line = f"  [{i + 1}/{runs}] stoker detached {run_s:5.2f} s (returned {ret_s:.2f} s)"
        if b.peer:
            run_p, ret_p, pid = b.nemo("partial", "local")
            res["p_run"].append(run_p)
            res["p_ret"].append(ret_p)
            res["p_ids"].append(pid)
            run_q, ret_q, _ = b.nemo("script", "local")
            res["q_run"].append(run_q)
            res["q_ret"].append(ret_q)
            line += (f" | NeMo-Run Partial {run_p:5.2f} s (returned {ret_p:.2f} s), Script "
                     f"{run_q:5.2f} s")
        # stoker train, tiny gpt-char: command to the first training step in metrics.jsonl
        out = b.work / f"train-{i}"
        t0 = time.time()
        proc = subprocess.run([*stoker_cmd(), "train", "gpt-char", *tiny_overrides(
            data, out, "trainer.max_steps=3"), "executor=detached", "--yes"], cwd=b.project,
            env=b.senv, capture_output=True, text=True, timeout=300)
        ret = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"stoker train executor=detached: {proc.stderr[-2000:]}")
        metrics = out / "metrics.jsonl"
        if not wait_for(lambda: metrics.exists() and '"step"' in metrics.read_text(), 300,
                        poll=0.01):
            raise RuntimeError(f"no training step in {metrics}")
        res["t_run"].append(time.time() - t0)
        res["t_ret"].append(ret)
        exp = re.search(r"launched experiment (\S+)", proc.stderr)
        if exp:
            b.wait_stoker_done(exp.group(1))
        print(line + f" | stoker train first step {res['t_run'][-1]:5.2f} s  ({load()})",
              flush=True)
    return res


def run_slurm(b: Bench, runs: int) -> dict[str, list]:
    res: dict[str, list] = {k: [] for k in ("s_run", "s_ret", "p_run", "p_ret", "r_run", "r_ret",
                                            "s_ids", "p_ids")}
    with slurm_cluster() as cluster:
        env = dict(cluster.env, BENCH_PARTITION=cluster.partition)

        def idle() -> None:
            wait_for(lambda: not cluster.run("squeue", "-h").stdout.strip(), 120, poll=0.1)

        for i in range(runs):
            run_s, ret_s, exp_id = b.stoker("slurm", env)
            res["s_run"].append(run_s)
            res["s_ret"].append(ret_s)
            res["s_ids"].append(exp_id)
            idle()
            line = f"  [{i + 1}/{runs}] stoker slurm {run_s:5.2f} s (returned {ret_s:.2f} s)"
            if b.peer:
                run_p, ret_p, pid = b.nemo("partial", "slurm", env)
                res["p_run"].append(run_p)
                res["p_ret"].append(ret_p)
                res["p_ids"].append(pid)
                idle()
                line += f" | NeMo-Run SlurmExecutor {run_p:5.2f} s (returned {ret_p:.2f} s)"
            m = b.marker()
            m.parent.mkdir(exist_ok=True)
            t0 = time.time()
            cluster.run("sbatch", "--parsable", "-o", str(b.work / "raw-%j.out"), "--wrap",
                        f"{sys.executable} {b.project / 'plain_job.py'} {m}")
            res["r_ret"].append(time.time() - t0)
            mark = read_marker(m, 120)
            if mark is None:
                raise RuntimeError("raw sbatch job never wrote its marker")
            res["r_run"].append(mark - t0)
            idle()
            print(line + f" | raw sbatch {res['r_run'][-1]:5.2f} s  ({load()})", flush=True)

        # (c) status of the finished Slurm experiments (asks squeue/scontrol)
        senv = {**b.senv, **env}
        res["s_status"] = b.status_times([*stoker_cmd(), "exp", "status", res["s_ids"][-1]],
                                         senv, STATUS_RUNS["stoker slurm"])
        if b.peer and res["p_ids"]:
            penv = {**b.penv, **env}
            res["p_status"] = b.status_times([str(PEER_PYTHON.parent / "nemo"), "experiment",
                                              "status", res["p_ids"][-1]], penv,
                                             STATUS_RUNS["peer"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions of the detached launches")
    ap.add_argument("--slurm-runs", type=int, default=3, help="repetitions on Slurm")
    ap.add_argument("--no-slurm", action="store_true")
    ap.add_argument("--no-peer", action="store_true", help="skip NeMo-Run even if installed")
    _quick.add(ap)
    args = ap.parse_args()
    if args.quick:
        args.runs, args.slurm_runs = 1, 1
        STATUS_RUNS.update(dict.fromkeys(STATUS_RUNS, 2))
    print(_quick.machine(args.quick))

    version = None if args.no_peer else peer_version()
    peer = version is not None
    print(f"stoker: {sys.executable}, sources {Path(__file__).resolve().parents[1] / 'src'}")
    if peer:
        print(f"peer:   {version} ({PEER_PYTHON.parents[1]})")
    else:
        _quick.skipped("NeMo-Run", "--no-peer" if args.no_peer else
                       f"its virtualenv {PEER_PYTHON.parents[1]} is absent ({PEER_SETUP})")
        print("peer:   NeMo-Run not measured; its figures below come from "
              "DESIGN.md section 6, NOT measured in this run")
    print(f"start:  {load()}, {os.cpu_count()} CPUs")

    work = Path(tempfile.mkdtemp(prefix="stoker-bench-launch-"))
    try:
        project = git_project(work / "project")
        b = Bench(work, project, peer)
        data = tiny_char_data(work / "data")

        # (d) what submission imports
        heavy_script, wall_script = imported_heavy(
            ["stoker_job.py", f"marker={work / 'probe1.txt'}", "executor=detached", "--yes"],
            b.senv, project)
        heavy_train, wall_train = imported_heavy(
            ["-m", "stoker", "train", "gpt-char", *tiny_overrides(data, work / "probe-run",
                                                                 "trainer.max_steps=1"),
             "executor=detached", "--yes"], b.senv, project)
        read_marker(work / "probe1.txt", 60)
        wait_for(lambda: (work / "probe-run" / "metrics.jsonl").exists(), 120)
        time.sleep(0.5 if args.quick else 2)

        print("\n(a) command to job running, detached, this machine")
        loc = run_local(b, args.runs, data)
        sloc = med(loc["s_run"])
        print(f"stoker  executor=detached (entrypoint) : to running {spread(loc['s_run'])}; "
              f"command returned {med(loc['s_ret']):.2f} s")
        print(f"stoker  train gpt-char (tiny) detached : to first step {spread(loc['t_run'])}; "
              f"command returned {med(loc['t_ret']):.2f} s")
        if peer:
            print(f"NeMo-Run LocalExecutor run.Partial     : to running {spread(loc['p_run'])}; "
                  f"command returned {med(loc['p_ret']):.2f} s (cannot detach: waits for the job)")
            print(f"NeMo-Run LocalExecutor run.Script      : to running {spread(loc['q_run'])}")
            print(f"ratio, to running: {ratio(med(loc['p_run']), sloc)} vs Partial, "
                  f"{ratio(med(loc['q_run']), sloc)} vs Script (goal >= 5x)")
        else:
            print(f"NeMo-Run (DESIGN.md, not measured): `import nemo_run` alone {DESIGN_IMPORT_S} s"
                  f" before anything is submitted -> ratio >= {ratio(DESIGN_IMPORT_S, sloc)}")

        print("\n(c) experiment status latency (fresh process, finished detached experiment)")
        st_s = b.status_times([*stoker_cmd(), "exp", "status", loc["s_ids"][-1]], b.senv,
                              STATUS_RUNS["stoker"])
        print(f"stoker exp status          : {spread(st_s)}")
        if peer and loc["p_ids"]:
            st_p = b.status_times([str(PEER_PYTHON.parent / "nemo"), "experiment", "status",
                                   loc["p_ids"][-1]], b.penv, STATUS_RUNS["peer"])
            print(f"nemo experiment status     : {spread(st_p)}")
            print(f"ratio: {ratio(med(st_p), med(st_s))} (goal >= 5x)  ({load()})")
        else:
            print(f"NeMo-Run (DESIGN.md, not measured): >= {DESIGN_IMPORT_S} s (import) -> "
                  f"ratio >= {ratio(DESIGN_IMPORT_S, med(st_s))}")

        if not args.no_slurm:
            print("\n(b) command to job running, Slurm (private single-node cluster)")
            try:
                sl = run_slurm(b, args.slurm_runs)
            except RuntimeError as e:
                _quick.skipped("(b) Slurm", e)
            else:
                print(f"stoker  executor=slurm (entrypoint)    : to running {spread(sl['s_run'])}; "
                      f"command returned {med(sl['s_ret']):.2f} s")
                if peer:
                    print(f"NeMo-Run SlurmExecutor + LocalTunnel   : to running "
                          f"{spread(sl['p_run'])}; command returned {med(sl['p_ret']):.2f} s")
                    print(f"ratio, to running: {ratio(med(sl['p_run']), med(sl['s_run']))}; "
                          f"command return: {ratio(med(sl['p_ret']), med(sl['s_ret']))} "
                          "(goal >= 5x)")
                print(f"raw sbatch --wrap (floor)              : to running {spread(sl['r_run'])}; "
                      f"command returned {med(sl['r_ret']):.2f} s")
                print(f"stoker exp status (Slurm)  : {spread(sl['s_status'])}")
                if "p_status" in sl:
                    print(f"nemo experiment status     : {spread(sl['p_status'])}")
                    print(f"ratio: {ratio(med(sl['p_status']), med(sl['s_status']))}")

        print("\n(d) modules the submitting process imports (-X importtime)")
        print(f"entrypoint script executor=detached --yes: heavy imports "
              f"{', '.join(heavy_script) or 'none'} (of torch, numpy, safetensors, tokenizers, "
              f"transformers); {wall_script:.2f} s")
        print(f"stoker train gpt-char executor=detached --yes: heavy imports "
              f"{', '.join(heavy_train) or 'none'}; {wall_train:.2f} s")
        print(f"submission imports torch: {'YES' if 'torch' in heavy_script + heavy_train else 'no'}")
        print(f"end: {load()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
