"""``stoker verify RUN``: re-run recorded steps and check that they come out the same.

The reproducibility promise ("a resumed run ends with the same weights as an uninterrupted
one") is something a user should be able to check on their own run, not take on trust. This
re-runs K steps of a run from one of its recorded checkpoints (or from step 0) in a scratch
directory, with the run's own ``config.yaml``, and compares the losses it logs and the
weights at the next recorded checkpoint with what the run recorded:

- bit-identical: "exact";
- otherwise the largest loss and weight deviation, and the machine fingerprint differences
  (:mod:`stoker.artifacts.machine`): on the same fingerprint any deviation means the run does
  not reproduce; on another machine a deviation within ``rtol`` is the expected float-level
  drift and counts as reproducing (said so), a larger one does not.

The run directory is only read; the scratch directory is removed afterwards. A re-run whose
settings differ from the checkpoint's (a change allowed on a resume after it) is refused by
the trainer's trajectory check in strict mode, naming the keys.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoker.errors import UserError
from stoker.train.checkpoint.layout import CHECKPOINTS_DIR, committed

__all__ = ["VerifyReport", "plan_verify", "verify_run"]

DEFAULT_RTOL = 1e-4  # the cross-machine tolerance of the golden-loss test


@dataclass
class VerifyReport:
    """What a verify re-ran and how it compared (the CLI prints :meth:`lines`)."""

    run_dir: Path
    start: int
    end: int
    rtol: float
    loss_steps: list[int] = field(default_factory=list)
    loss_dev: float = 0.0  # largest |recorded - re-run| loss
    loss_dev_step: int | None = None
    loss_rel: float = 0.0
    weights_compared: int = 0  # tensors compared at ``end`` (0: no checkpoint there)
    weight_dev: float = 0.0  # largest |recorded - re-run| weight element
    weight_dev_tensor: str | None = None
    weight_rel: float = 0.0
    exact: bool = False
    machine_diffs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def same_machine(self) -> bool:
        return not self.machine_diffs

    @property
    def reproduces(self) -> bool:
        """Exact; or, on another machine, within ``rtol`` for losses and weights."""
        if self.exact:
            return True
        if self.same_machine:
            return False
        return self.loss_rel <= self.rtol and self.weight_rel <= self.rtol

    def lines(self) -> list[str]:
        frm = "step 0 (from scratch)" if self.start == 0 else f"checkpoint step {self.start}"
        out = [f"re-ran steps {self.start + 1}..{self.end} of {self.run_dir} from {frm} in a "
               "scratch directory"]
        what = (f"{len(self.loss_steps)} logged losses"
                + (f" and {self.weights_compared} weight tensors at step {self.end}"
                   if self.weights_compared else ""))
        if self.exact:
            out.append(f"exact: {what} are bit-identical")
        else:
            if self.loss_dev_step is not None:
                out.append(f"largest loss deviation: {self.loss_dev:.3g} (relative "
                           f"{self.loss_rel:.3g}) at step {self.loss_dev_step}")
            if self.weights_compared:
                out.append(f"largest weight deviation: {self.weight_dev:.3g} (relative "
                           f"{self.weight_rel:.3g}) in {self.weight_dev_tensor} at step "
                           f"{self.end}")
        if self.machine_diffs:
            from stoker.artifacts.machine import DRIFT_NOTE

            out.append("machine: not the one the run was recorded on ("
                       + "; ".join(self.machine_diffs) + f"): {DRIFT_NOTE}")
        else:
            out.append("machine: the same fingerprint the run was recorded on")
        out.extend(self.notes)
        if self.reproduces:
            out.append("reproduces" + ("" if self.exact else
                                       f": within rtol={self.rtol:g} on another machine"))
        elif self.same_machine:
            out.append("does not reproduce: on the same machine the re-run should be "
                       "bit-identical")
        else:
            out.append(f"does not reproduce: deviations beyond rtol={self.rtol:g}")
        return out


@dataclass(frozen=True)
class VerifyPlan:
    """Which recorded span to re-run: from ``start`` (0: scratch) to ``end``."""

    run_dir: Path
    start: int
    end: int
    start_ckpt: Path | None
    end_ckpt: Path | None


def plan_verify(run_dir: str | Path, *, from_step: int | None = None,
                steps: int | None = None) -> VerifyPlan:
    """Check that ``run_dir`` is a run with checkpoints and pick the span (exit 2 if not).

    Default: from the earliest checkpoint to the next one (from step 0 to the first when
    there is only one); ``steps`` sets the length, ``from_step`` the start (0 or a step
    with a committed checkpoint).
    """
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run} is not a run directory (no config.yaml); give the directory "
                        "a `stoker train` run wrote (its output_dir)")
    ckpts = {s: p for s, p, _ in committed(run / CHECKPOINTS_DIR)}
    if not ckpts:
        raise UserError(f"{run} has no committed checkpoint under {run / CHECKPOINTS_DIR}: "
                        "nothing recorded to compare the weights with; train it first")
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    order = sorted(ckpts)
    if from_step is None:
        start = order[0] if (len(order) > 1 or steps is not None) else 0
    else:
        start = from_step
        if start != 0 and start not in ckpts:
            raise UserError(f"--from-step {start}: {run} has no checkpoint at that step; its "
                            f"checkpoints are at steps {', '.join(map(str, order))} (or use "
                            "--from-step 0 to re-run from scratch)")
    if steps is None:
        later = [s for s in order if s > start]
        if not later:
            raise UserError(f"no checkpoint after step {start} in {run} to compare with; "
                            f"pick an earlier --from-step or give --steps K")
        end = later[0]
    else:
        end = start + steps
        if end > order[-1]:
            raise UserError(f"--steps {steps} from step {start} goes past the run's last "
                            f"checkpoint (step {order[-1]}); nothing recorded there")
    logged = [s for s in _losses(run) if start < s <= end]
    if end not in ckpts and not logged:  # a re-run with nothing to compare proves nothing
        raise UserError(f"steps {start + 1}..{end} of {run} hold no logged loss and end at no "
                        f"checkpoint, so there is nothing recorded to compare with; its "
                        f"checkpoints are at steps {', '.join(map(str, order))}: give --steps "
                        "to reach one (or leave --steps out to re-run up to the next)")
    return VerifyPlan(run, start, end, ckpts.get(start) if start else None, ckpts.get(end))


def _losses(run_dir: Path) -> dict[int, float]:
    """Step -> logged training loss (the last line of a step wins, as a resume wrote it)."""
    out: dict[int, float] = {}
    try:
        text = (run_dir / "metrics.jsonl").read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and "loss" in rec:
            try:
                out[rec["step"]] = float(rec["loss"])
            except (TypeError, ValueError):
                continue
    return out


def _recorded_machine(ckpt: Path | None, run_dir: Path) -> dict[str, Any] | None:
    from stoker.train.checkpoint import load_checkpoint
    from stoker.train.trajectory import MACHINE

    if ckpt is not None:
        machine = load_checkpoint(ckpt, keys=(MACHINE,)).get(MACHINE)
        if isinstance(machine, dict):
            return machine
    try:
        machine = json.loads((run_dir / "env.json").read_text()).get("machine")
    except (OSError, ValueError, AttributeError):
        return None
    return machine if isinstance(machine, dict) else None


def verify_run(run_dir: str | Path, *, from_step: int | None = None, steps: int | None = None,
               rtol: float = DEFAULT_RTOL, init_weights: Any = None,
               scratch_root: str | Path | None = None,
               overrides: Sequence[str] = ()) -> VerifyReport:
    """Re-run a span of ``run_dir`` (see :func:`plan_verify`) and compare (module docstring).

    ``init_weights`` is the caller's weight provider for a run that started with
    ``init_from`` (the CLI passes the package layer's); ``overrides`` are extra
    non-trajectory settings for the re-run (e.g. ``trainer.device=cpu``).
    """
    plan = plan_verify(run_dir, from_step=from_step, steps=steps)
    scratch = Path(tempfile.mkdtemp(prefix="stoker-verify-", dir=scratch_root))
    try:
        again = scratch / "run"
        _rerun(plan, again, init_weights, overrides)
        return _compare(plan, again, rtol)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _rerun(plan: VerifyPlan, out: Path, init_weights: Any, overrides: Sequence[str]) -> None:
    from stoker.config import to_record
    from stoker.train.recipe_config import compose_recipe, typed_recipe
    from stoker.train.trainer import Trainer
    from stoker.train.trajectory import TrajectoryMismatch

    resume = str(plan.start_ckpt) if plan.start_ckpt is not None else "never"
    cfg = compose_recipe(str(plan.run_dir / "config.yaml"), [
        f"output_dir={out}", f"resume={resume}", f"trainer.stop_after_steps={plan.end}",
        "register_artifact=false", "loggers=[jsonl]", *overrides])
    recipe = typed_recipe(cfg)
    trainer = Trainer(recipe, config=to_record(cfg), argv=["stoker", "verify"],
                      init_weights=init_weights, strict_resume=True)
    try:
        trainer.fit()
    except TrajectoryMismatch as exc:
        raise UserError(
            f"{plan.run_dir}/config.yaml does not describe the run at checkpoint step "
            f"{plan.start} (settings changed on a resume after it, or another number of "
            "processes):\n  " + "\n  ".join(c.line() for c in exc.changes)
            + "\nVerify a span after the change (--from-step), or run stoker verify under "
            "torchrun with the run's number of processes.") from None


def _compare(plan: VerifyPlan, again: Path, rtol: float) -> VerifyReport:
    from stoker.artifacts.machine import differences
    from stoker.train.checkpoint import load_checkpoint
    from stoker.train.checkpoint.layout import step_dir_name

    report = VerifyReport(plan.run_dir, plan.start, plan.end, rtol)
    recorded, rerun = _losses(plan.run_dir), _losses(again)
    span = range(plan.start + 1, plan.end + 1)
    report.loss_steps = [s for s in span if s in recorded and s in rerun]
    exact = bool(report.loss_steps)
    for s in report.loss_steps:
        a, b = recorded[s], rerun[s]
        dev = abs(a - b) if math.isfinite(a) and math.isfinite(b) else (0.0 if a == b
                                                                         or (a != a and b != b)
                                                                         else math.inf)
        exact = exact and (a == b or (a != a and b != b))
        rel = dev / max(abs(a), 1e-12)
        if dev > report.loss_dev or report.loss_dev_step is None:
            report.loss_dev, report.loss_dev_step, report.loss_rel = dev, s, rel
    missing = [s for s in span if s in recorded and s not in rerun]
    if missing:
        report.notes.append(f"the re-run logged no loss at steps {missing[:5]} the run has")
        exact = False
    if not report.loss_steps:
        report.notes.append("no logged losses in that span to compare (trainer.log_every)")

    mine = again / CHECKPOINTS_DIR / step_dir_name(plan.end)
    if plan.end_ckpt is not None:
        a = load_checkpoint(plan.end_ckpt, keys=("model",))["model"]
        b = load_checkpoint(mine, keys=("model",))["model"]
        if a.keys() != b.keys():
            report.notes.append(f"weight names differ: {sorted(a.keys() ^ b.keys())[:5]}")
            exact = False
        for name in sorted(a.keys() & b.keys()):
            ta, tb = a[name], b[name]
            report.weights_compared += 1
            if ta.shape != tb.shape:
                report.notes.append(f"{name}: shape {tuple(ta.shape)} recorded, "
                                    f"{tuple(tb.shape)} re-run")
                exact = False
                continue
            if ta.equal(tb):
                continue
            exact = False
            diff = (ta.double() - tb.double()).abs()
            dev = float(diff.max()) if diff.numel() else 0.0
            if dev != dev:
                dev = math.inf
            scale = float(ta.double().abs().max()) if ta.numel() else 0.0
            rel = dev / max(scale, 1e-12)
            if dev >= report.weight_dev:
                report.weight_dev, report.weight_dev_tensor, report.weight_rel = dev, name, rel
    else:
        report.notes.append(f"no checkpoint recorded at step {plan.end}: weights not compared")
    report.exact = exact
    from stoker.train.trajectory import MACHINE

    current = load_checkpoint(mine, keys=(MACHINE,)).get(MACHINE) if mine.is_dir() else None
    recorded_machine = _recorded_machine(plan.end_ckpt or plan.start_ckpt, plan.run_dir)
    if isinstance(current, dict):
        report.machine_diffs = (differences(recorded_machine, current)
                                if recorded_machine is None
                                or recorded_machine.get("key") != current.get("key") else [])
    return report
