"""Helpers shared by the trainer tests (imported by path: tests run in importlib mode)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def tiny_corpus_text() -> str:
    """About 40 KB of deterministic Python-like text (no dependency on the stdlib's sources,
    so the golden losses do not move with the Python version)."""
    names = ["alpha", "beta", "gamma", "delta", "value", "count", "items", "total", "index"]
    lines = []
    for i in range(400):
        a, b = names[i % len(names)], names[(i * 7 + 3) % len(names)]
        lines.append(f"def {a}_{i}({b}, n={i % 13}):")
        lines.append(f"    \"\"\"Return the {a} of {b}.\"\"\"")
        lines.append(f"    if {b} is None:")
        lines.append(f"        return {i}")
        lines.append("    for k in range(n):")
        lines.append(f"        {b} = {b} + k * {i % 5}")
        lines.append(f"    return {b}")
        lines.append("")
    return "\n".join(lines) + "\n"


def tiny_overrides(data: Path, out: Path, *extra: str) -> list[str]:
    """gpt-char shrunk to a few seconds on CPU. With dropout, so every step draws from the
    global RNG: an exact-resume test then fails if a resume does not restore the RNG."""
    return [
        f"data.path={data}", f"output_dir={out}",
        "model.n_layers=2", "model.dim=32", "model.n_heads=2", "model.n_kv_heads=1",
        "model.dropout=0.1",
        "data.seq_len=32", "data.batch_size=8", "trainer.eval_every=10",
        "trainer.eval_batches=2", "trainer.log_every=1", "checkpoint.every_steps=5",
        "checkpoint.keep_last=10", "loggers=[jsonl]", "~callbacks.samples",
        "schedule.warmup_steps=2", "register_artifact=false", "trainer.num_threads=1", *extra,
    ]


def run_cli(stoker_cmd: list[str], *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
    e = dict(os.environ if env is None else env)
    e.setdefault("PYTHONHASHSEED", "0")
    e.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([*stoker_cmd, *args], capture_output=True, text=True, cwd=cwd,
                          env=e, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if "loss" in r}


def poison_checkpoint(step_dir: Path, tensor: str | None = None) -> str:
    """Put NaN into one tensor of ``step_dir``'s model.safetensors and re-seal the marker
    (size and checksum), as a hostile or buggy writer would: a valid marker, bad weights.
    Returns the poisoned tensor's name."""
    from safetensors.torch import load_file, save_file

    from stoker.train.checkpoint.checksums import Hasher

    f = step_dir / "model.safetensors"
    weights = load_file(f)
    name = tensor or sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, f)
    marker_path = step_dir / "COMMITTED"
    marker = json.loads(marker_path.read_text())
    algo = marker.get("checksum", "crc32")
    h = Hasher(algo)
    h.update(f.read_bytes())
    marker["files"]["model.safetensors"] = {"size": f.stat().st_size, algo: h.hexdigest()}
    marker_path.write_text(json.dumps(marker))
    return name


def safe_metrics(run_dir: Path) -> list[dict]:
    """The complete lines of a metrics.jsonl a running process may be writing."""
    recs = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return recs


def kill_9_at_step(argv: list[str], out: Path, step: int, *, cwd: Path | None = None,
                   env: dict[str, str] | None = None, timeout: float = 120) -> int:
    """Start a training command, SIGKILL it once ``out/metrics.jsonl`` reached ``step``;
    its return code (``-SIGKILL`` unless it ended first)."""
    import signal
    import time

    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "metrics.jsonl").exists() and any(
                    r.get("step", 0) >= step for r in safe_metrics(out)):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.returncode


def reseal(step_dir: Path, fname: str) -> None:
    """Fix the marker's size and checksum of ``fname`` after a test rewrote it (a checkpoint
    edited by a tool that knows the format: the marker is valid, the content is not)."""
    from stoker.train.checkpoint.checksums import Hasher

    f = step_dir / fname
    marker_path = step_dir / "COMMITTED"
    marker = json.loads(marker_path.read_text())
    algo = marker.get("checksum", "crc32")
    h = Hasher(algo)
    h.update(f.read_bytes())
    marker["files"][fname] = {"size": f.stat().st_size, algo: h.hexdigest()}
    marker_path.write_text(json.dumps(marker))


def edit_state(step_dir: Path, edit) -> None:
    """Rewrite a checkpoint's state.json through ``edit(tree) -> tree`` and reseal it."""
    f = step_dir / "state.json"
    f.write_text(json.dumps(edit(json.loads(f.read_text()))))
    reseal(step_dir, "state.json")
