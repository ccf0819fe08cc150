"""The Trainer: one loop a reader can follow from top to bottom.

``Trainer(recipe, config=...).fit()`` does, in this order:

1. join the process group when started by torchrun (:mod:`stoker.train.distributed`);
2. pick the run directory and the checkpoint to resume from (:mod:`stoker.train.run_dir`);
3. seed, open the data, build the model, check every key path on one probe batch, build
   the optimizer, the LR schedule and the precision policy — all before anything is
   written, so a bad recipe leaves no half-made run directory;
   then take the run directory's lock (rank 0; :mod:`stoker.train.run_lock`), so a second
   process on the same directory stops here, before it reads or writes anything there;
4. restore the latest checkpoint (model, optimizer, schedule, scaler, RNG, data position,
   callback state), or say the run is already finished;
5. write ``config.yaml``/``command.txt``/``env.json``, open the metric loggers;
6. train: per step, ``grad_accum`` micro-batches (forward under autocast, losses picked
   by keys, backward), unscale, clip, optimizer step, schedule step; then log, call the
   callbacks, evaluate, checkpoint, and check the stop flags (signals, callbacks, a
   non-finite loss, ``stop_after_steps``);
7. at the end: evaluate and checkpoint. Publishing the model is the caller's choice
   (``run_training`` adds :class:`stoker.train.publish.PublishModel`), so the loop knows
   nothing about artifacts.

The typed recipe is the one configuration the loop reads. ``config`` is the run's record
of it (the resolved plain tree as the user wrote it, plus the vocabulary size the model was
built with), written to ``config.yaml`` and every checkpoint; the trainer never reads
settings from it.

Exactness on CPU: the only random streams are the global RNGs (saved in every checkpoint)
and the sampler's seeded per-epoch permutation (position saved as epoch + micro-batches
consumed). Loaders use private generators and evaluation draws nothing, so a resumed run
replays the uninterrupted one bit for bit.

Length: about 750 lines, past the project's 550 on purpose: what is left here is the loop
and the bookkeeping that shares its state (resume into full or sharded state, init_from
before step 0, the save in flight that each step polls and every way out waits for); data
setup, key checks, optimizer and schedule, signals, the checkpoint formats and run files
live in their own modules. The next split, if it grows again: resume and init_from (both
"load weights into the built model and optimizer") into a module of their own.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoker.errors import CheckpointError, ConfigError, ConfigProblem, Interrupted, RunError
from stoker.train import distributed as dist_utils
from stoker.train.callbacks import CallbackList, stop_if_not_finite
from stoker.train.checkpoint import CheckpointManager
from stoker.train.checkpoint.layout import CHECKPOINTS_DIR
from stoker.train.data_setup import (
    DataBundle,
    batches_per_epoch,
    build_data,
    epoch_loader,
    check_iterable_data,
    eval_loader,
    make_sampler,
)
from stoker.models.outputs import as_preds
from stoker.train.init_from import INIT_FROM_FILE, WeightsProvider
from stoker.train.evaluate import evaluate, model_inputs, to_device
from stoker.train.keys import check_recipe_keys, get_by_key
from stoker.train.optim import build_optimizer, build_scheduler, lr_factor
from stoker.train.precision import Precision
from stoker.train.recipe import TrainRecipe
from stoker.train.run_dir import (
    RunPlan,
    attach_log_file,
    config_yaml,
    detach_log_file,
    opening_outputs,
    plan_run_dir,
    write_run_files,
)
from stoker.train.run_lock import RunDirLock, claim_run_dir
from stoker.train.signals import StopSignals

__all__ = ["FitResult", "Trainer", "lr_factor"]

log = logging.getLogger("stoker.train")


@dataclass
class FitResult:
    """What a call to :meth:`Trainer.fit` did, for the CLI to report."""

    run_dir: Path
    status: str  # finished | stopped | paused | already_finished | already_paused
    step: int
    max_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    artifact: str | None = None
    message: str = ""


class _NullLogger:
    """Ranks other than 0 write nothing."""

    def log(self, metrics: dict[str, float], step: int) -> None:  # noqa: D401
        return None

    def close(self) -> None:
        return None


class Trainer:
    """Trains one recipe. Callbacks see it as a :class:`~stoker.train.view.TrainerView`."""

    def __init__(
        self,
        recipe: TrainRecipe,
        *,
        config: dict[str, Any],
        argv: Sequence[str] = (),
        callbacks: Sequence[Any] = (),
        init_weights: WeightsProvider | None = None,
        strict_resume: bool = False,
    ) -> None:
        self.recipe = recipe  # the one configuration the loop reads
        self.config = dict(config)  # the run's record of it (see the module docstring)
        # a permission for this resume, not a setting of the run: config.yaml drops it
        self.config.pop("allow_changes", None)
        # refuse any difference from the checkpoint's run, even when branching into another
        # directory (stoker verify re-runs exactly what was recorded)
        self._strict_resume = strict_resume
        self._trajectory: dict[str, Any] = {}  # this run's trajectory fingerprint (_build)
        self._change_entry: dict[str, Any] | None = None  # what this resume changed
        self._inherited_changes: list[dict[str, Any]] = []  # a branch's source's record
        self._resume_notes: list[str] = []  # warnings of the resume, logged once outputs open
        self.argv = list(argv)
        self._extra_callbacks = list(callbacks)
        # where recipe.init_from's weights come from (spec -> WeightSource); None: the
        # training layer's own reader (checkpoints and art:// checkpoints only)
        self._init_weights = init_weights
        self._init_record: dict[str, Any] | None = None  # what init_from loaded, for the run
        self._init_notes: list[str] = []  # logged once the run's log file is open

        # where this process runs: fit() joins the torchrun group and sets the real ones
        self.env = dist_utils.DistEnv()
        self.device = self.env.device
        self.is_rank_zero = True
        self.run_dir: Path | None = None
        self._plan: RunPlan | None = None  # set by _fit(); _build() asks it about resuming

        # built from the recipe by _build(), before anything is written
        self.precision: Precision | None = None
        self.data: DataBundle | None = None
        self.tokenizer: Any = None
        self.sampler: Any = None
        self.batch_size = recipe.data.batch_size
        self.steps_per_epoch = 0
        self.model: nn.Module | None = None
        self._train_model: nn.Module | None = None  # model under DDP/FSDP2/compile
        self.losses: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.callbacks = CallbackList()
        self.checkpoints: CheckpointManager | None = None
        self.logger: Any = _NullLogger()  # metric loggers, opened on rank 0 by _open_outputs
        self._log_handler: logging.Handler | None = None
        self._lock: RunDirLock | None = None  # one writer per run directory (rank 0 holds it)

        # progress (restored from a checkpoint when resuming)
        self.step = 0
        self.epoch = 0
        self._batch_in_epoch = 0
        self.max_steps = recipe.trainer.max_steps or 0  # _build() counts epochs into steps

        # stopping: callbacks set the public flags (request_stop), signals set _signals
        self.should_stop = False
        self.stop_reason = ""
        self.stop_failed = False  # stop without saving and end with RunError (a NaN loss)
        self._signals = StopSignals()  # SIGINT/SIGTERM/SIGUSR1: save, then exit

        # what was logged and saved so far
        self.last_metrics: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self._last_save_step = -1
        self._last_save_time = time.monotonic()
        self._last_checkpoint: Path | None = None

    # ------------------------------------------------------------------ fit
    def fit(self) -> FitResult:
        """Run (or resume) the recipe to ``trainer.max_steps``; see the module docstring."""
        self.env = dist_utils.setup(self.recipe.trainer.device)
        self.device = self.env.device
        self.is_rank_zero = self.env.is_rank_zero
        try:
            return self._fit()
        finally:
            self.logger.close()
            detach_log_file(log, self._log_handler)
            self._log_handler = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            dist_utils.teardown()

    def _fit(self) -> FitResult:
        r = self.recipe
        plan: RunPlan = dist_utils.broadcast_object(
            plan_run_dir(name=r.name, output_dir=r.output_dir, resume=r.resume), self.env
        )
        self.run_dir = plan.run_dir
        self._plan = plan
        self._build()  # everything that can fail on a bad recipe, before writing anything
        plan = self._claim(plan)  # the run directory's lock, before reading or writing there
        resumed = self._resume(plan)
        done = self._already_done()
        if done is not None:
            return done
        created = self._lock.created if self._lock is not None else None
        with opening_outputs(self.run_dir, created=created):
            self._open_outputs(plan, resumed)
        log.info("%s: %s (step %d of %d)", plan.note, self.run_dir, self.step, self.max_steps)
        for note in self._init_notes:
            log.info("%s", note)
        if self.is_rank_zero:
            for note in self._resume_notes:
                log.warning("%s", note)
        try:
            self.callbacks.on_fit_start(self)
            with self._signals.caught():
                self._train_loop()
            return self._finish()
        except BaseException as exc:
            self._settle_failed_save()
            if not isinstance(exc, Interrupted):
                self.callbacks.on_exception(self, exc)
            raise

    # ---------------------------------------------------------------- build
    def _build(self) -> None:
        """Seed, then data, model, objectives, optimizer, schedule, callbacks, checkpoints."""
        r = self.recipe
        t = r.trainer
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        self.precision = Precision(t.precision, self.device)
        from stoker.train.rng import seed_everything

        seed_everything(r.seed)
        self._build_data()

        # model
        from stoker.models import build_model

        model = build_model(r.model, vocab_size=self.data.vocab_size).to(self.device)
        self.model = model
        self._record_vocab_size(self.data.vocab_size)
        self._apply_init_from()
        probe = to_device(self.data.probe_batch(), self.device)
        check_recipe_keys(r, model, probe)
        self._train_model = dist_utils.wrap_model(model, self.env, t.distributed)
        if t.compile:
            self._train_model = torch.compile(self._train_model)  # type: ignore[assignment]

        # objectives
        from stoker.config import build

        self.losses = {k: build(v) for k, v in r.losses.items()}
        self.metrics = {k: build(v) for k, v in r.metrics.items()}

        # optimizer and schedule
        self.optimizer = build_optimizer(r.optim, model)
        self.scheduler = build_scheduler(self.optimizer, r.schedule, max_steps=self.max_steps)
        from stoker.train.trajectory import trajectory_fingerprint

        self._trajectory = trajectory_fingerprint(
            r, data=self.data, vocab_size=self.data.vocab_size, max_steps=self.max_steps,
            world_size=self.env.world_size, device_type=self.device.type)

        # callbacks: the recipe's, then the caller's
        built = [build(v) for v in r.callbacks.values()]
        self.callbacks = CallbackList([*built, *self._extra_callbacks])

        c = r.checkpoint
        self.checkpoints = CheckpointManager(
            self.run_dir / CHECKPOINTS_DIR, keep_last=c.keep_last, keep_best=c.keep_best,
            best_metric=c.best_metric, best_mode=c.best_mode, fsync=c.fsync,
        )

    def _apply_init_from(self) -> None:
        """Load ``recipe.init_from``'s weights into the fresh model (before the run directory
        exists, so a source that does not fit leaves nothing behind); skipped when this run
        resumes from its own checkpoint, which already holds the fine-tuned weights."""
        spec = self.recipe.init_from
        if spec is None:
            return
        from stoker.train.recipe import InitFromConfig

        if isinstance(spec, str):  # the recipe's validator turns a path into the node
            spec = InitFromConfig(path=spec)
        from stoker.train.checkpoint import resolve_checkpoint

        plan = self._plan
        if plan is not None and plan.resume_from is not None and \
                resolve_checkpoint(plan.resume_from, missing_ok=True) is not None:
            self._init_notes = [f"init_from={spec.path} not applied: resuming this run from "
                                "its checkpoint"]
            return
        from stoker.train.init_from import apply_init, checkpoint_weights

        provider = self._init_weights or checkpoint_weights
        source = provider(spec.path)
        report = apply_init(self.model, source, ignore=spec.ignore, strict=spec.strict,
                            resize_vocab=spec.resize_vocab, vocab_size=self.data.vocab_size)
        self._init_record = {"spec": spec.path, **source.record, **report.as_record()}
        self._init_notes = report.lines(source.description)

    def _claim(self, plan: RunPlan) -> RunPlan:
        """Lock the run directory (see :func:`~stoker.train.run_lock.claim_run_dir`)."""
        r = self.recipe
        plan, self._lock = claim_run_dir(plan, name=r.name, output_dir=r.output_dir,
                                         resume=r.resume, argv=self.argv, env=self.env)
        self.run_dir = plan.run_dir
        self.checkpoints.root = plan.run_dir / CHECKPOINTS_DIR
        return plan

    def _build_data(self) -> None:
        """Open the datasets and the sampler; count an epoch in optimizer steps."""
        r = self.recipe
        t = r.trainer
        self.data = build_data(r.data, r.model, seed=r.seed)
        self.tokenizer = self.data.tokenizer
        if self.data.iterable:
            self.steps_per_epoch = 0  # unknown: an iterable dataset has no length
            check_iterable_data(self.data.train, r)
            self.max_steps = int(t.max_steps or 0)
            return
        self.sampler = make_sampler(
            len(self.data.train), seed=r.seed, shuffle=r.data.shuffle,
            rank=self.env.rank, world_size=self.env.world_size,
        )
        self.steps_per_epoch = batches_per_epoch(self.sampler, self.batch_size) // t.grad_accum
        if self.steps_per_epoch == 0:
            raise ConfigError(problems=[ConfigProblem(
                "data.batch_size",
                f"one optimizer step needs batch_size*grad_accum*processes="
                f"{self.batch_size * t.grad_accum * self.env.world_size} samples but the "
                f"'{r.data.train_split}' split has {len(self.data.train)}; lower "
                "data.batch_size or trainer.grad_accum",
            )])
        if t.max_steps is None:
            self.max_steps = int(t.epochs or 1) * self.steps_per_epoch

    def _record_vocab_size(self, vocab_size: int | None) -> None:
        """Write the vocabulary the model was built with into the run's config record, so
        ``config.yaml`` and the checkpoints describe the model completely."""
        from stoker.models.registry import takes_vocab_size

        model_cfg = self.config.get("model")
        if isinstance(model_cfg, dict) and vocab_size is not None \
                and model_cfg.get("vocab_size") is None and takes_vocab_size(self.recipe.model):
            self.config["model"] = {**model_cfg, "vocab_size": vocab_size}

    # --------------------------------------------------------------- resume
    def _resume(self, plan: RunPlan) -> bool:
        """Load the checkpoint the plan names (latest committed one in a directory)."""
        if plan.resume_from is None:
            return False
        from stoker.train.checkpoint import load_checkpoint, resolve_checkpoint
        from stoker.train.checkpoint.load import sharded_model_shapes

        path = resolve_checkpoint(plan.resume_from, missing_ok=True)
        if path is None:
            log.info("no committed checkpoint in %s: starting from step 0", plan.resume_from)
            return False
        # Shapes first (a message naming the tensors), then the trajectory: both before any
        # state is applied or anything is written.
        shapes = sharded_model_shapes(path)  # None: a full-state checkpoint
        if shapes is not None and dist_utils.is_sharded(self._train_model):
            # shards to shards: each rank reads its slices at this world size (DCP reshards)
            self._check_shapes(shapes, path)
            self._check_trajectory(path)
            state = self._load_sharded(path)
            self._load_state(state, path, sharded=True)
        else:  # full state, or a sharded checkpoint consolidated in this process
            state = load_checkpoint(path, map_location=self.device,
                                    allow_nonfinite=self.recipe.checkpoint.allow_nonfinite)
            self._check_shapes(state["model"], path)
            self._check_trajectory(path)
            self._load_state(state, path)
        log.info("resumed from %s (step %d)", path, self.step)
        return True

    def _check_trajectory(self, path: Path) -> None:
        """Refuse a resume whose settings differ from the checkpoint's run (see
        :mod:`stoker.train.trajectory`), note the changes that go ahead, and say when the
        checkpoint was saved on another machine (float-level drift, not a refusal)."""
        from stoker.train.checkpoint import load_checkpoint, read_marker
        from stoker.train.trajectory import (
            MACHINE,
            TRAJECTORY,
            TrajectoryMismatch,
            change_entry,
            compare,
            mismatch_message,
            read_changes,
            refused_changes,
            unknown_allowances,
        )

        saved = load_checkpoint(path, keys=(TRAJECTORY, MACHINE))
        marker = read_marker(path) or {}
        step = int(marker.get("step", 0))
        owner = path.parent.parent if path.parent.name == CHECKPOINTS_DIR else path.parent
        branch = owner.resolve() != self.run_dir.resolve()
        self._machine_note(saved.get(MACHINE), owner, path)
        recorded = saved.get(TRAJECTORY)
        if not isinstance(recorded, dict):
            self._resume_notes.append(
                f"checkpoint {path} records no trajectory fingerprint (saved by an older "
                "stoker): resuming without checking that this run's settings match it")
            return
        changes = compare(recorded, self._trajectory)
        allow = list(self.recipe.allow_changes)
        unknown = unknown_allowances(allow, set(recorded) | set(self._trajectory))
        if unknown:
            raise TrajectoryMismatch(
                f"allow_changes={unknown} names no setting that decides the run's trajectory; "
                "the keys are those of the checkpoint's record, e.g. optim.lr, "
                "data.batch_size, trainer.grad_accum, world_size, or a section (optim, "
                "model, schedule). Fix the name or drop it.")
        refused = changes if self._strict_resume else refused_changes(
            changes, allow, recorded=recorded, current=self._trajectory)
        if refused and (self._strict_resume or not branch):
            raise TrajectoryMismatch(
                mismatch_message(path, step, refused, recorded, self._trajectory), refused)
        if branch:
            self._inherited_changes = read_changes(owner)
            self._change_entry = change_entry(step, path, changes, how="branch")
        elif changes:
            how = "free" if not refused_changes(changes, (), recorded=recorded,
                                                 current=self._trajectory) else "allow_changes"
            self._change_entry = change_entry(step, path, changes, how=how)
        if changes:
            self._resume_notes.append(
                f"resuming {path} (step {step}) with changed settings: "
                + "; ".join(c.line() for c in changes))

    def _machine_note(self, recorded: Any, owner: Path, path: Path) -> None:
        """One line when the checkpoint (or its run's env.json) names another machine."""
        from stoker.artifacts.machine import DRIFT_NOTE, differences, machine_fingerprint

        if not isinstance(recorded, dict):
            try:
                recorded = json.loads((owner / "env.json").read_text()).get("machine")
            except (OSError, ValueError, AttributeError):
                recorded = None
        if not isinstance(recorded, dict) or not recorded:
            return
        current = machine_fingerprint()
        if recorded.get("key") == current.get("key"):
            return
        diffs = differences(recorded, current)
        if diffs:
            self._resume_notes.append(
                f"resuming {path} on another machine than it was saved on "
                f"({'; '.join(diffs)}): {DRIFT_NOTE}")

    def _load_sharded(self, path: Path) -> dict[str, Any]:
        """A sharded checkpoint straight into this rank's shards; every rank agrees on failure."""
        from stoker.train.checkpoint import load_checkpoint
        from stoker.train.checkpoint.sharded import split_for_dcp

        model_state, optim_state = dist_utils.sharded_state(self._train_model, self.optimizer)
        _, targets = split_for_dcp({"model": model_state, "optimizer": optim_state})
        state: dict[str, Any] = {}
        error: CheckpointError | None = None
        try:
            state = load_checkpoint(path, map_location=self.device, into=targets,
                                    allow_nonfinite=self.recipe.checkpoint.allow_nonfinite)
        except CheckpointError as exc:
            error = exc
        if dist_utils.any_flag(error is not None, self.env):
            raise error or CheckpointError(
                f"checkpoint {path} could not be loaded on another rank; see that rank's error")
        return state

    def _check_shapes(self, weights: Mapping[str, Any], path: Path) -> None:
        from stoker.train.checkpoint import check_model_compatible

        problems = check_model_compatible(self.model, weights)
        if problems:
            raise CheckpointError(
                f"checkpoint {path} was saved from a model of a different shape:\n  "
                + "\n  ".join(problems[:20])
                + "\nUse the model settings of that run (its config.yaml), or resume=never "
                "to start a fresh run with this shape."
            )

    def _load_state(self, state: Mapping[str, Any], path: Path, *, sharded: bool = False) -> None:
        self._check_shapes(state["model"], path)
        if sharded:
            dist_utils.load_sharded_state(self._train_model, self.optimizer, state["model"],
                                          state["optimizer"])
        else:
            dist_utils.load_full_model_state(self._train_model, state["model"])
            dist_utils.load_full_optim_state(self._train_model, self.optimizer,
                                             state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("scaler"))
        self.callbacks.load_state_dict(state.get("callbacks") or {})
        progress = state["trainer"]
        self.step = int(progress["step"])
        self.epoch = int(progress["epoch"])
        self._batch_in_epoch = int(progress["batch_in_epoch"])
        if self.sampler is None and "dataset" in (state.get("data") or {}):
            self.data.train.load_state_dict(state["data"]["dataset"])
        self._last_save_step = self.step
        self._last_checkpoint = path
        self.callbacks.on_checkpoint_load(self, state)
        from stoker.train.rng import restore_rng_state

        restore_rng_state(state["rng"])  # last: nothing after this may draw

    def _already_done(self) -> FitResult | None:
        """Re-running a finished (or paused) run reports instead of retraining."""
        stop_after = self.recipe.trainer.stop_after_steps
        if self.step >= self.max_steps and self._last_checkpoint is not None:
            return FitResult(
                self.run_dir, "already_finished", self.step, self.max_steps,
                checkpoint=self._last_checkpoint,
                message=f"run in {self.run_dir} already finished at step {self.step} "
                f"(trainer.max_steps={self.max_steps}); raise trainer.max_steps to train "
                "longer, or use resume=never for a fresh run",
            )
        if stop_after is not None and self.step >= stop_after and self._last_checkpoint:
            return FitResult(
                self.run_dir, "already_paused", self.step, self.max_steps,
                checkpoint=self._last_checkpoint,
                message=f"run in {self.run_dir} is at step {self.step}, at or past "
                f"trainer.stop_after_steps={stop_after}; drop or raise it to continue",
            )
        return None

    # --------------------------------------------------------------- outputs
    def _open_outputs(self, plan: RunPlan, resumed: bool) -> None:
        if not self.is_rank_zero:
            return
        run_dir = self.run_dir
        from stoker.atomic import atomic_write_text
        from stoker.train.trajectory import CHANGES_FILE, config_notes, read_changes

        entries = self._inherited_changes or read_changes(run_dir)
        if self._change_entry is not None:
            entries = [*entries, self._change_entry]
        text = config_yaml(self.config, run_dir)
        if entries:  # config.yaml says which of its values did not apply from step 0
            text = config_notes(entries) + text
        write_run_files(run_dir, config_yaml=text, argv=self.argv)
        if self._change_entry is not None or self._inherited_changes:
            atomic_write_text(run_dir / CHANGES_FILE,
                              json.dumps({"changes": entries}, indent=2, default=str) + "\n")
        if self._init_record is not None:
            atomic_write_text(run_dir / INIT_FROM_FILE,
                              json.dumps(self._init_record, indent=2, default=str) + "\n")
        if self.tokenizer is not None and not (run_dir / "tokenizer").exists():
            self.tokenizer.save(run_dir / "tokenizer")
        self._log_handler = attach_log_file(log, run_dir / "logs" / "train.log")
        from stoker.track.loggers import make_loggers

        names = list(dict.fromkeys(["jsonl", *self.recipe.loggers]))
        self.logger = make_loggers(names, run_dir, self.config,
                                   resume_step=self.step if resumed else None)

    # ------------------------------------------------------------------ loop
    def _train_loop(self) -> None:
        r = self.recipe
        t = r.trainer
        target = self.max_steps if t.stop_after_steps is None else min(
            self.max_steps, t.stop_after_steps)
        model = self._train_model
        model.train()
        batches = self._batches()
        params = [p for p in self.model.parameters() if p.requires_grad]
        tokens_per_step = (self.data.tokens_per_sample or 0) * self.batch_size * t.grad_accum \
            * self.env.world_size
        samples_per_step = self.batch_size * t.grad_accum * self.env.world_size
        while self.step < target and not self.should_stop:
            self.callbacks.on_step_start(self, self.step)
            data_wait = 0.0
            loss_sum = torch.zeros((), device=self.device)
            for micro in range(t.grad_accum):
                t0 = time.perf_counter()
                batch = to_device(next(batches), self.device)
                data_wait += time.perf_counter() - t0
                last = micro == t.grad_accum - 1
                with self._maybe_no_sync(model, last):
                    with self.precision.autocast():
                        preds = as_preds(model(**model_inputs(batch, r.model_inputs)),
                                         r.model_outputs)
                        loss = self._loss(batch, preds)
                    self.precision.backward(loss / t.grad_accum)
                loss_sum += loss.detach()
            log_now = (self.step + 1) % t.log_every == 0 or self.step + 1 == target
            self.precision.unscale(self.optimizer)
            grad_norm = None  # clipping measures it anyway; without clipping, on log steps
            if t.clip is not None or log_now:
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, t.clip if t.clip is not None else math.inf)
            self.precision.step(self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1

            # metrics of this step; callbacks (LRMonitor, Throughput, ...) add theirs
            metrics = self._step_metrics(loss_sum / t.grad_accum, grad_norm, data_wait,
                                         tokens_per_step, samples_per_step, global_=log_now)
            self.callbacks.on_step_end(self, self.step, metrics)
            if log_now:
                self.logger.log(metrics, self.step)
                self.last_metrics = metrics
            if not self.should_stop:  # with NaNGuard in the recipe it has already looked
                stop_if_not_finite(self, self.step, metrics, ("loss",))

            self._sync_flags()
            self._poll_checkpoint()
            if self.should_stop and self.stop_failed:
                raise RunError(self.stop_reason)
            if t.eval_every and self.step % t.eval_every == 0 and self.step < target:
                self.run_eval()
            if self._signals.received is not None:
                self._save_checkpoint()
                self._wait_checkpoint()  # an async write completes before the process exits
                raise self._signals.interrupted(self.step, self.run_dir)
            if self.step < target and self._checkpoint_due():  # the end saves after its eval
                self._save_checkpoint()

    def _batches(self) -> Iterator[Any]:
        """Micro-batches forever, epoch after epoch, from the saved position onward."""
        while True:
            loader = epoch_loader(
                self.data.train, self.sampler, self.epoch, batch_size=self.batch_size,
                skip_batches=self._batch_in_epoch, num_workers=self.recipe.data.num_workers,
                collate=self.data.collate,
            )
            for batch in loader:
                self._batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self._batch_in_epoch = 0

    def _loss(self, batch: Any, preds: Any) -> torch.Tensor:
        context = {"batch": batch, "preds": preds, "step": self.step}
        total: torch.Tensor | float = 0.0
        for loss in self.losses.values():
            value = loss(**{a: get_by_key(context, k) for a, k in loss.keys.items()})
            total = total + loss.weight * value
        assert isinstance(total, torch.Tensor), "a recipe has at least one loss"
        return total

    @staticmethod
    def _maybe_no_sync(model: nn.Module, last_micro: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients only on the last micro-batch of a step."""
        if not last_micro and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()

    def _step_metrics(self, loss: torch.Tensor, grad_norm: torch.Tensor | None, data_wait: float, tokens: int, samples: int, *, global_: bool
                      ) -> dict[str, float]:
        """Loss (averaged over ranks on logging steps), grad norm, counts for Throughput."""
        if global_:
            loss = dist_utils.all_reduce_mean(loss.reshape(1), self.env)[0]
        value = float(loss.item())
        metrics: dict[str, float] = {"loss": value}
        if self.data.tokens_per_sample and global_:
            metrics["perplexity"] = math.exp(min(value, 700.0)) if math.isfinite(value) else value
        if grad_norm is not None:
            norm = float(grad_norm)
            # an fp16 overflow step is skipped by the GradScaler: not a divergence
            if math.isfinite(norm) or self.precision.scaler is None:
                metrics["grad_norm"] = norm
        metrics["num_tokens"] = float(tokens)
        metrics["num_samples"] = float(samples)
        metrics["data_wait_s"] = data_wait
        metrics["epoch"] = float(self.epoch)
        return metrics

    def _sync_flags(self) -> None:
        """All ranks agree on stopping (signal, callback) at this step boundary."""
        if not self.env.is_distributed:
            return
        flags = torch.tensor(
            [float(self._signals.received or 0), float(self.should_stop), float(self.stop_failed)],
            device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if flags[0] and self._signals.received is None:
            self._signals.received = int(flags[0].item())
        self.should_stop = bool(flags[1])
        self.stop_failed = bool(flags[2])

    def _checkpoint_due(self) -> bool:
        c = self.recipe.checkpoint
        if c.every_steps and self.step % c.every_steps == 0:
            return True
        if c.every_minutes:
            due = time.monotonic() - self._last_save_time >= 60.0 * c.every_minutes
            return dist_utils.any_flag(due, self.env)
        return False

    # ------------------------------------------------------------ eval/save
    def run_eval(self) -> dict[str, float]:
        """Evaluate on the eval split, log, and tell the callbacks."""
        if self.data.eval is None:
            return {}
        r = self.recipe
        loader = eval_loader(
            self.data.eval, batch_size=r.data.eval_batch_size or r.data.batch_size,
            rank=self.env.rank, world_size=self.env.world_size, num_workers=r.data.num_workers,
            collate=self.data.collate,
        )
        eval_model = self._train_model if dist_utils.is_sharded(self._train_model) else self.model
        out = evaluate(
            eval_model, loader, inputs=r.model_inputs, losses=self.losses,
            metrics=self.metrics, env=self.env, autocast=self.precision.autocast,
            max_batches=r.trainer.eval_batches, outputs=r.model_outputs,
        )
        self.last_eval = out
        self.logger.log(out, self.step)
        self.callbacks.on_eval_end(self, self.step, out)
        return out

    def state_dict(self, *, sharded: bool = False) -> dict[str, Any]:
        """Everything needed to continue exactly (see CheckpointManager for the format).

        ``sharded``: model and optimizer as this rank holds them (FSDP2 shards, no gather),
        for a sharded checkpoint; otherwise full tensors (FSDP2 gathers them).
        """
        from stoker.artifacts.machine import machine_fingerprint
        from stoker.train.rng import capture_rng_state
        from stoker.train.trajectory import MACHINE, TRAJECTORY

        if sharded:
            model_state, optim_state = dist_utils.sharded_state(self._train_model, self.optimizer)
        else:
            model_state = dist_utils.full_model_state(self._train_model)
            optim_state = dist_utils.full_optim_state(self._train_model, self.optimizer)
        return {
            "model": model_state,
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.state_dict(),
            "rng": capture_rng_state(),
            "callbacks": self.callbacks.state_dict(),
            "trainer": {"step": self.step, "epoch": self.epoch,
                        "batch_in_epoch": self._batch_in_epoch, "max_steps": self.max_steps},
            "data": self._data_state(),
            "config": self.config,
            TRAJECTORY: self._trajectory,  # what a resume must match (train/trajectory.py)
            MACHINE: machine_fingerprint(),  # where it was saved: drift, not a refusal
        }

    def _data_state(self) -> dict[str, Any]:
        """The sampler's position, or an iterable dataset's own state (its contract)."""
        if self.sampler is not None:
            return self.sampler.state_dict(consumed=self._batch_in_epoch * self.batch_size)
        train = self.data.train
        return {"dataset": train.state_dict()} if hasattr(train, "state_dict") else {}

    def save_checkpoint(self) -> Path | None:
        """Save now (callbacks may call it); rank 0 writes, every rank takes part."""
        return self._save_checkpoint()

    def _sharded_saves(self) -> bool:
        """checkpoint.format: sharded, full, or auto (sharded when FSDP2 shards the model)."""
        fmt = self.recipe.checkpoint.format
        if fmt == "auto":
            return dist_utils.is_sharded(self._train_model)
        return fmt == "sharded"

    def _save_checkpoint(self) -> Path | None:
        if self._last_save_step == self.step:
            return self._last_checkpoint
        background = self.recipe.checkpoint.async_save
        metrics = {**self.last_metrics, **self.last_eval}
        path = None
        if self._sharded_saves():  # every rank writes its own shards
            state = self.state_dict(sharded=True)
            if self.is_rank_zero:
                self.callbacks.on_checkpoint_save(self, state)
            path = self.checkpoints.save_sharded(self.step, state, metrics=metrics,
                                                 background=background)
        else:
            state = self.state_dict()  # collective under FSDP: every rank builds it
            if self.is_rank_zero:
                self.callbacks.on_checkpoint_save(self, state)
                path = self.checkpoints.save(self.step, state, metrics=metrics,
                                             background=background)
            if not background:
                dist_utils.barrier(self.env)
        if self.is_rank_zero:
            log.info("%s checkpoint %s", "writing" if background else "saved", path)
        self._last_save_step = self.step
        self._last_save_time = time.monotonic()
        self._last_checkpoint = path or self._last_checkpoint
        return path

    def _poll_checkpoint(self) -> None:
        """With checkpoint.async: commit the write in flight once it is complete (all ranks
        call it at the same step; a sharded commit is a collective)."""
        if self.recipe.checkpoint.async_save:
            path = self.checkpoints.poll()
            if path is not None and self.is_rank_zero:
                log.info("committed checkpoint %s", path)

    def _wait_checkpoint(self) -> None:
        """Block until the checkpoint write in flight (if any) is committed."""
        path = self.checkpoints.wait()
        if path is not None and self.is_rank_zero:
            log.info("committed checkpoint %s", path)

    def _settle_failed_save(self) -> None:
        """On a failing run, finish a full-state background write (local to rank 0, so safe);
        a sharded one needs every rank and is left uncommitted (swept by the next save)."""
        if self.checkpoints is None or self.checkpoints.pending() is None:
            return
        if self._sharded_saves():
            log.warning("run failed while sharded checkpoint %s was being written; it was "
                        "not committed", self.checkpoints.pending())
            return
        try:
            self._wait_checkpoint()
        except CheckpointError as exc:
            log.error("the checkpoint being written when the run failed was lost: %s", exc)

    # ---------------------------------------------------------------- finish
    def _finish(self) -> FitResult:
        t = self.recipe.trainer
        paused = t.stop_after_steps is not None and self.step >= t.stop_after_steps \
            and self.step < self.max_steps
        # A pause on an eval step evaluates too, as the uninterrupted run would at that step.
        if not paused or (t.eval_every and self.step % t.eval_every == 0):
            self.run_eval()
        ckpt = self._save_checkpoint()
        self._wait_checkpoint()  # the end of a run waits for an async write
        if self.should_stop:
            status, msg = "stopped", f"stopped at step {self.step}: {self.stop_reason or 'a callback asked to stop'}"
        elif paused:
            status, msg = "paused", (f"stopped after step {self.step} "
                                     f"(trainer.stop_after_steps={t.stop_after_steps}); re-run "
                                     f"without it to continue to step {self.max_steps}")
        else:
            status, msg = "finished", f"finished at step {self.step}"
        self.callbacks.on_fit_end(self)
        return FitResult(self.run_dir, status, self.step, self.max_steps,
                         metrics={**self.last_metrics, **self.last_eval},
                         checkpoint=self._last_checkpoint or ckpt, message=msg)
