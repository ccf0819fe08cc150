"""Preempt-and-requeue overhead on the real Slurm cluster: USR1 to the resumed job's first step.

    python benchmarks/bench_launch_preempt.py [--runs 2] [--local] [--quick]

A tiny gpt-char training is launched with ``stoker train ... executor=slurm --detach`` on the
tests' private single-node cluster (tests/_shared/engines.py; ``cred_expire=5``, scheduler
interval 2 s). Once it has logged a few steps, ``scancel --signal=USR1 JOB`` (what Slurm's
``--signal=USR1@90`` sends before a time limit or preemption). The job then checkpoints at
the next step boundary, exits 138, requeues itself (``scontrol requeue``), waits in the
queue, starts again and resumes from the checkpoint. Polled every ~20 ms:

    signal -> checkpoint committed   (finish the step, save model + optimizer + RNG + data)
    -> job left RUNNING (requeued)   (the process exits, the batch script requeues)
    -> job RUNNING again             (Slurm: requeued jobs wait cred_expire + 1 s here)
    -> first resumed step logged     (interpreter, imports, build, load checkpoint, one step)

The baseline is the same job's own start: submission to its first step, so "startup +
resume" can be read against a cold start. No peer: NeMo-Run has no requeue-and-resume of
its own (its Slurm executor leaves it to the training code).

Without Slurm (or with ``--local``) the same tiny training runs in the foreground on this
machine instead: USR1 to the ``stoker train`` process -> checkpoint committed -> exit, then
the same command again (``resume=auto``) to its first resumed step, against the same cold
start. That is stoker's own share of a preemption, without Slurm's requeue wait.
``--quick``: one run, the signal after 2 logged steps.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402
from _launch_common import (  # noqa: E402
    load,
    med,
    slurm_cluster,
    stoker_cmd,
    stoker_env,
    tiny_char_data,
    tiny_overrides,
    wait_for,
)

STEPS_BEFORE = 5  # logged steps before the signal


def steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    out = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if "step" in rec and "loss" in rec:
            out.append(int(rec["step"]))
    return out


def committed(run: Path) -> list[int]:
    ck = run / "checkpoints"
    if not ck.exists():
        return []
    return sorted(int(p.name.split("-")[1]) for p in ck.glob("step-*") if (p / "COMMITTED").exists())


def one_run(cluster, env: dict[str, str], data: Path, work: Path, i: int) -> dict[str, float]:
    run = work / f"run-{i}"
    t0 = time.monotonic()
    before = set((Path(env["STOKER_HOME"]) / "experiments").glob("*/*/logs/stderr.log"))
    proc = subprocess.run([*stoker_cmd(), "train", "gpt-char", *tiny_overrides(
        data, run, "trainer.max_steps=100000"), "executor=slurm", "--detach", "--yes"],
        cwd=work / "project", env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"stoker train executor=slurm exited {proc.returncode}:\n"
                           f"{proc.stderr[-3000:]}")
    job = cluster.run("squeue", "-h", "-o", "%i").stdout.split()
    if len(job) != 1:
        raise RuntimeError(f"expected one job in the queue, found {job}")
    job_id = job[0]
    if not wait_for(lambda: len(steps(run)) >= 1, 180, poll=0.01):
        raise RuntimeError(f"job {job_id} logged no step")
    first_step = time.monotonic() - t0
    wait_for(lambda: len(steps(run)) >= STEPS_BEFORE, 180, poll=0.01)

    logs = [p for p in (Path(env["STOKER_HOME"]) / "experiments").glob("*/*/logs/stderr.log")
            if p not in before]  # this job's
    cluster.run("scancel", "--signal=USR1", job_id)
    sig = time.monotonic()
    t: dict[str, float] = {"cold start (submit to first step)": first_step}
    ckpt = None
    left_running = again = None
    deadline = sig + 240
    while time.monotonic() < deadline:
        now = time.monotonic()
        if ckpt is None and committed(run):
            ckpt = committed(run)[-1]
            t["checkpoint"] = now - sig
        state = cluster.job_field(job_id, "JobState")
        if "exited" not in t and any("requeueing job" in p.read_text(errors="replace")
                                     for p in logs):
            t["exited"] = now - sig  # the batch script saw exit 138 and runs scontrol requeue
        if left_running is None and state != "RUNNING":  # COMPLETING, REQUEUED, PENDING
            left_running = now
            t["requeue"] = now - sig
        if left_running is not None and again is None and state == "RUNNING":
            again = now
            t["running again"] = now - sig
        if again is not None and ckpt is not None and (ckpt + 1) in steps(run):
            t["first resumed step"] = now - sig
            break
        time.sleep(0.02)
    restarts = cluster.job_field(job_id, "Restarts")
    cluster.run("scancel", job_id, check=False)
    wait_for(lambda: not cluster.run("squeue", "-h").stdout.strip(), 60, poll=0.2)
    if "first resumed step" not in t:
        raise RuntimeError(f"job {job_id} did not resume within 240 s: {t}")
    if restarts != "1":
        raise RuntimeError(f"job {job_id}: Restarts={restarts}, expected 1")
    t["ckpt_step"] = float(ckpt or 0)
    return t


def local_run(env: dict[str, str], data: Path, work: Path, i: int) -> dict[str, float]:
    """USR1 to a foreground ``stoker train`` on this machine, then the same command again."""
    run = work / f"local-{i}"
    argv = [*stoker_cmd(), "train", "gpt-char", *tiny_overrides(
        data, run, "trainer.max_steps=100000"), "--yes"]

    log = work / f"local-{i}.log"  # a file, not a pipe nobody reads while it runs

    def start() -> subprocess.Popen:
        with open(log, "a") as err:
            return subprocess.Popen(argv, cwd=work / "project", env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)

    def fail(proc: subprocess.Popen, what: str) -> RuntimeError:
        if proc.poll() is None:
            proc.kill()
        return RuntimeError(f"local stoker train: {what} (exit {proc.wait()}):\n"
                            f"{log.read_text(errors='replace')[-3000:]}")

    t: dict[str, float] = {}
    t0 = time.monotonic()
    proc = start()
    if not wait_for(lambda: len(steps(run)) >= 1 or proc.poll() is not None, 180, poll=0.01) \
            or proc.poll() is not None:
        raise fail(proc, "logged no step")
    t["cold start (submit to first step)"] = time.monotonic() - t0
    wait_for(lambda: len(steps(run)) >= STEPS_BEFORE, 180, poll=0.01)
    proc.send_signal(signal.SIGUSR1)
    sig = time.monotonic()
    if not wait_for(lambda: bool(committed(run)), 120, poll=0.01):
        raise fail(proc, "no checkpoint committed after SIGUSR1")
    t["checkpoint"] = time.monotonic() - sig
    try:
        rc = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise fail(proc, "did not exit after its checkpoint") from None
    t["exited"] = time.monotonic() - sig
    ckpt = committed(run)[-1]
    t1 = time.monotonic()
    again = start()
    try:
        if not wait_for(lambda: (ckpt + 1) in steps(run) or again.poll() is not None, 180,
                        poll=0.01) or again.poll() is not None:
            raise fail(again, f"did not resume from step {ckpt}")
        t["first resumed step"] = time.monotonic() - t1
    finally:
        if again.poll() is None:
            again.send_signal(signal.SIGTERM)  # saves a checkpoint and stops
            try:
                again.wait(timeout=60)
            except subprocess.TimeoutExpired:
                again.kill()
                again.wait()
    t["exit code"] = float(rc)
    t["ckpt_step"] = float(ckpt)
    return t


def main_local(env: dict[str, str], data: Path, work: Path, runs: int) -> None:
    results = []
    for i in range(runs):
        r = local_run(env, data, work, i)
        results.append(r)
        print(f"  [{i + 1}/{runs}] local: USR1 at step >= {STEPS_BEFORE}, checkpoint step "
              f"{int(r['ckpt_step'])}: checkpoint {r['checkpoint']:.2f} s, exited "
              f"{int(r['exit code'])} at {r['exited']:.2f} s; restart to first resumed step "
              f"{r['first resumed step']:.2f} s (cold start "
              f"{r['cold start (submit to first step)']:.2f} s)  ({load()})", flush=True)
    m = {k: med([r[k] for r in results]) for k in results[0]}
    cold = m["cold start (submit to first step)"]
    print(f"\nmedian of {len(results)}, local (no Slurm requeue): USR1 to checkpoint "
          f"{m['checkpoint']:.2f} s, to exit {m['exited']:.2f} s; restart to first resumed step "
          f"{m['first resumed step']:.2f} s; cold start {cold:.2f} s")
    print(f"ratio restart-to-resumed-step / cold start: {m['first resumed step'] / cold:.2f}x "
          f"(the restart also loads the checkpoint)  ({load()})")


def main() -> None:
    global STEPS_BEFORE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--local", action="store_true",
                    help="the local preempt-and-resume path only (what runs without Slurm)")
    _quick.add(ap)
    args = ap.parse_args()
    if args.quick:
        args.runs, STEPS_BEFORE = 1, 2
    work = Path(tempfile.mkdtemp(prefix="stoker-bench-preempt-"))
    print(_quick.machine(args.quick))
    print(f"start: {load()}, {os.cpu_count()} CPUs; tiny gpt-char (2 layers, dim 32, seq 32, "
          "batch 8), 1 thread")
    try:
        data = tiny_char_data(work / "data")
        (work / "project").mkdir()  # launched from an empty folder: no code to ship
        local_env = stoker_env(work / "home", OMP_NUM_THREADS="1")
        if args.local:
            main_local(local_env, data, work, args.runs)
            return
        try:
            started = slurm_cluster()
            cluster = started.__enter__()
        except RuntimeError as e:  # no engine here (`make engines` as root installs it)
            _quick.skipped("Slurm requeue", f"{e}; measuring the local path instead")
            main_local(local_env, data, work, args.runs)
            return
        try:
            env = stoker_env(work / "home", OMP_NUM_THREADS="1", **cluster.env)
            results = []
            for i in range(args.runs):
                r = one_run(cluster, env, data, work, i)
                results.append(r)
                print(f"  [{i + 1}/{args.runs}] USR1 at step >= {STEPS_BEFORE}, checkpoint step "
                      f"{int(r['ckpt_step'])}: checkpoint {r['checkpoint']:.2f} s, requeued "
                      f"{r['requeue']:.2f} s (trainer exited {r.get('exited', float('nan')):.2f} s), running again {r['running again']:.2f} s, first "
                      f"resumed step {r['first resumed step']:.2f} s (cold start "
                      f"{r['cold start (submit to first step)']:.2f} s)  ({load()})", flush=True)
        finally:
            started.__exit__(None, None, None)
        m = {k: med([r[k] for r in results if k in r]) for k in results[0]}
        print(f"\nmedian of {len(results)}, seconds after `scancel --signal=USR1`:")
        print(f"  checkpoint committed      {m['checkpoint']:6.2f}   (step boundary + save)")
        if "exited" in m:
            print(f"  trainer exited 138        {m['exited']:6.2f}   (+{m['exited'] - m['checkpoint']:.2f}: "
                  "close outputs, interpreter exit, srun step end; the script says 'requeueing')")
        print(f"  job requeued              {m['requeue']:6.2f}   (+{m['requeue'] - m.get('exited', m['checkpoint']):.2f}: "
              "scontrol requeue until the job leaves RUNNING)")
        print(f"  job running again         {m['running again']:6.2f}   "
              f"(+{m['running again'] - m['requeue']:.2f}: Slurm's requeue wait, cred_expire=5 + "
              "scheduler)")
        print(f"  first resumed step        {m['first resumed step']:6.2f}   "
              f"(+{m['first resumed step'] - m['running again']:.2f}: start-up, load checkpoint, "
              "one step)")
        print(f"  cold start of the same job (submit to first step): "
              f"{m['cold start (submit to first step)']:.2f} s")
        own = m['first resumed step'] - (m['running again'] - m['requeue'])
        print(f"USR1 to resumed first step: {m['first resumed step']:.2f} s; of which stoker's "
              f"own (checkpoint + exit + restart + resume): {own:.2f} s  ({load()})")
        print(f"ratio stoker's own / cold start of the same job: "
              f"{own / m['cold start (submit to first step)']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
