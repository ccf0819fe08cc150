"""The Trainer: one loop a reader can follow from top to bottom.

``Trainer(recipe, config=...).fit()`` does, in this order:

1. join the process group when started by torchrun (:mod:`stoker.train.distributed`);
2. pick the run directory and the checkpoint to resume from (:mod:`stoker.train.run_dir`);
3. seed, open the data, build the model, check every key path on one probe batch, build
   the optimizer, the LR schedule and the precision policy — all before anything is
   written, so a bad recipe leaves no half-made run directory;
4. restore the latest checkpoint (model, optimizer, schedule, scaler, RNG, data position,
   callback state), or say the run is already finished;
5. write ``config.yaml``/``command.txt``/``env.json``, open the metric loggers;
6. train: per step, ``grad_accum`` micro-batches (forward under autocast, losses picked
   by keys, backward), unscale, clip, optimizer step, schedule step; then log, call the
   callbacks, evaluate, checkpoint, and check the stop flags (signals, callbacks,
   ``stop_after_steps``);
7. at the end: evaluate, checkpoint, publish a model artifact.

Exactness on CPU: the only random streams are the global RNGs (saved in every checkpoint)
and the sampler's seeded per-epoch permutation (position saved as epoch + micro-batches
consumed). Loaders use private generators and evaluation draws nothing, so a resumed run
replays the uninterrupted one bit for bit.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoker.errors import CheckpointError, ConfigError, ConfigProblem, Interrupted, RunError
from stoker.train import distributed as dist_utils
from stoker.train.data_setup import (
    batches_per_epoch,
    build_data,
    epoch_loader,
    eval_loader,
    make_sampler,
)
from stoker.train.evaluate import evaluate, model_inputs, to_device
from stoker.train.keys import check_keys, get_by_key
from stoker.train.optim import build_optimizer
from stoker.train.precision import Precision
from stoker.train.run_dir import RunPlan, opening_outputs, plan_run_dir, write_run_files
from stoker.train.schema import TrainRecipe

__all__ = ["FitResult", "Trainer", "lr_factor"]

log = logging.getLogger("stoker.train")

_SIGNALS = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGUSR1")) if s
)


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


def lr_factor(step: int, *, max_steps: int, warmup: int, kind: str, min_ratio: float) -> float:
    """Multiplier of ``optim.lr`` before optimizer step ``step + 1`` (warmup, then decay)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant" or max_steps <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    if kind == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _NullLogger:
    """Ranks other than 0 write nothing."""

    def log(self, metrics: dict[str, float], step: int) -> None:  # noqa: D401
        return None

    def close(self) -> None:
        return None


class Trainer:
    """Trains one recipe. Attributes listed in docs/CONTRACTS.md are what callbacks may use."""

    def __init__(
        self,
        recipe: TrainRecipe,
        *,
        config: dict[str, Any],
        argv: Sequence[str] = (),
        callbacks: Sequence[Any] = (),
        data_from_artifact: bool = False,
    ) -> None:
        self.recipe = recipe
        self.config = config  # resolved plain dict, saved as config.yaml and in checkpoints
        self.argv = list(argv)
        self._extra_callbacks = list(callbacks)
        # Kept for callers; lineage no longer needs it (see _data_input).
        self._data_from_artifact = data_from_artifact
        # public state (see CONTRACTS.md "what a callback may use")
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.step = 0
        self.epoch = 0
        self.max_steps = recipe.trainer.max_steps or 0
        self.should_stop = False
        self.stop_reason = ""
        self.stop_failed = False  # set with should_stop by NaNGuard: end without saving
        self.logger: Any = _NullLogger()
        self.run_dir: Path | None = None
        self.tokenizer: Any = None
        self.device = torch.device("cpu")
        self.checkpoints: Any = None
        self.is_rank_zero = True
        self.last_metrics: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        # private loop state
        self._batch_in_epoch = 0
        self._signal: int | None = None
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
            self._close_log_file()
            dist_utils.teardown()

    def _fit(self) -> FitResult:
        r = self.recipe
        plan: RunPlan = dist_utils.broadcast_object(
            plan_run_dir(name=r.name, output_dir=r.output_dir, resume=r.resume), self.env
        )
        self.run_dir = plan.run_dir
        self._build()  # everything that can fail on a bad recipe, before writing anything
        resumed = self._resume(plan)
        done = self._already_done()
        if done is not None:
            return done
        with opening_outputs(self.run_dir):
            self._open_outputs(plan, resumed)
        log.info("%s: %s (step %d of %d)", plan.note, self.run_dir, self.step, self.max_steps)
        try:
            self.callbacks.on_fit_start(self)
            with self._signal_flags():
                self._train_loop()
            return self._finish()
        except BaseException as exc:
            if not isinstance(exc, Interrupted):
                self.callbacks.on_exception(self, exc)
            raise

    # ---------------------------------------------------------------- build
    def _build(self) -> None:
        r = self.recipe
        t = r.trainer
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        self.precision = Precision(t.precision, self.device)
        from stoker.train.rng import seed_everything

        seed_everything(r.seed)

        # data
        self.data = build_data(r.data, r.model, seed=r.seed)
        self.tokenizer = self.data.tokenizer
        self.sampler = make_sampler(
            len(self.data.train), seed=r.seed, shuffle=r.data.shuffle,
            rank=self.env.rank, world_size=self.env.world_size,
        )
        self.batch_size = r.data.batch_size
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

        # model
        from stoker.models import build_model

        model = build_model(r.model, vocab_size=self.data.vocab_size).to(self.device)
        self.model = model
        model_cfg = self.config.get("model")
        if isinstance(model_cfg, dict) and "vocab_size" in type(r.model).model_fields \
                and model_cfg.get("vocab_size") is None:
            # record the vocabulary the model was built with: config.yaml and checkpoints
            # then describe the model completely
            model_cfg["vocab_size"] = self.data.vocab_size
        self._check_keys(model)
        self._train_model: nn.Module = dist_utils.wrap_model(model, self.env, t.distributed)
        if t.compile:
            self._train_model = torch.compile(self._train_model)  # type: ignore[assignment]

        # objectives
        from stoker.config import build

        self.losses = {k: build(v) for k, v in r.losses.items()}
        self.metrics = {k: build(v) for k, v in r.metrics.items()}

        # optimizer and schedule
        self.optimizer = build_optimizer(r.optim, model)
        s = r.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda i: lr_factor(i, max_steps=self.max_steps, warmup=s.warmup_steps,
                                kind=s.kind, min_ratio=s.min_lr_ratio),
        )

        # callbacks
        from stoker.train.callbacks import CallbackList

        built = [build(v) for v in r.callbacks.values()]
        self.callbacks = CallbackList([*built, *self._extra_callbacks])

        # checkpoints
        from stoker.train.checkpoint import CheckpointManager

        c = r.checkpoint
        self.checkpoints = CheckpointManager(
            self.run_dir / "checkpoints", keep_last=c.keep_last, keep_best=c.keep_best,
            best_metric=c.best_metric, best_mode=c.best_mode, fsync=c.fsync,
        )

    def _check_keys(self, model: nn.Module) -> None:
        """Resolve every key path on one probe sample: typos fail now, with suggestions."""
        from torch.utils.data import default_collate

        r = self.recipe
        batch = to_device(default_collate([self.data.train[0]]), self.device)
        check_keys({"batch": batch}, [(f"model_inputs.{a}", k) for a, k in r.model_inputs.items()])
        params = inspect.signature(model.forward).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        bad = [a for a in r.model_inputs if a not in params and not takes_kwargs]
        if bad:
            raise ConfigError(problems=[ConfigProblem(
                f"model_inputs.{a}",
                f"{type(model).__name__}.forward has no argument '{a}'; it takes: "
                f"{', '.join(n for n in params if n != 'self')}",
            ) for a in bad])
        was = model.training
        model.eval()
        with torch.no_grad():
            preds = model(**model_inputs(batch, r.model_inputs))
        model.train(was)
        context = {"batch": batch, "preds": preds, "step": 0}
        wanted = []
        for section in ("losses", "metrics"):
            for name, node in getattr(r, section).items():
                for arg, key in _key_args(node).items():
                    wanted.append((f"{section}.{name}.{arg}", key))
        check_keys(context, wanted)

    # --------------------------------------------------------------- resume
    def _resume(self, plan: RunPlan) -> bool:
        """Load the checkpoint the plan names (latest committed one in a directory)."""
        if plan.resume_from is None:
            return False
        from stoker.train.checkpoint import CheckpointManager

        src = plan.resume_from
        if src.name.startswith("step-"):
            path: Path | None = src
            manager = CheckpointManager(src.parent, keep_last=None)
        else:
            manager = CheckpointManager(src, keep_last=None)
            path = manager.latest()
        if path is None:
            log.info("no committed checkpoint in %s: starting from step 0", src)
            return False
        state = manager.load(path, map_location=self.device)
        self._load_state(state, path)
        log.info("resumed from %s (step %d)", path, self.step)
        return True

    def _load_state(self, state: Mapping[str, Any], path: Path) -> None:
        from stoker.train.checkpoint import check_model_compatible

        problems = check_model_compatible(self.model, state["model"])
        if problems:
            raise CheckpointError(
                f"checkpoint {path} was saved from a model of a different shape:\n  "
                + "\n  ".join(problems[:20])
                + "\nUse the model settings of that run (its config.yaml), or resume=never "
                "to start a fresh run with this shape."
            )
        dist_utils.load_full_model_state(self._train_model, state["model"])
        dist_utils.load_full_optim_state(self._train_model, self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("scaler"))
        self.callbacks.load_state_dict(state.get("callbacks") or {})
        progress = state["trainer"]
        self.step = int(progress["step"])
        self.epoch = int(progress["epoch"])
        self._batch_in_epoch = int(progress["batch_in_epoch"])
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
        import yaml

        run_dir = self.run_dir
        cfg = dict(self.config)
        cfg["output_dir"] = str(run_dir.resolve())
        cfg["resume"] = "auto"
        header = (f"# Resolved config of this run; re-run or resume it with:\n"
                  f"#   stoker train {run_dir / 'config.yaml'} --yes\n")
        write_run_files(run_dir, config_yaml=header + yaml.safe_dump(cfg, sort_keys=False),
                        argv=self.argv)
        if self.tokenizer is not None and not (run_dir / "tokenizer").exists():
            self.tokenizer.save(run_dir / "tokenizer")
        self._open_log_file(run_dir / "logs" / "train.log")
        from stoker.track.loggers import make_loggers

        names = list(dict.fromkeys(["jsonl", *self.recipe.loggers]))
        self.logger = make_loggers(names, run_dir, self.config,
                                   resume_step=self.step if resumed else None)

    def _open_log_file(self, path: Path) -> None:
        self._log_handler = logging.FileHandler(path, encoding="utf-8")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._log_handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)

    def _close_log_file(self) -> None:
        handler = getattr(self, "_log_handler", None)
        if handler is not None:
            log.removeHandler(handler)
            handler.close()

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
                        preds = model(**model_inputs(batch, r.model_inputs))
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
            if not math.isfinite(metrics["loss"]) and not self.should_stop:
                self._nan_stop(metrics["loss"])

            self._sync_flags()
            if self.should_stop and self.stop_failed:
                raise RunError(self.stop_reason)
            if t.eval_every and self.step % t.eval_every == 0 and self.step < target:
                self.run_eval()
            if self._signal is not None:
                self._save_checkpoint()
                raise self._interrupted()
            if self.step < target and self._checkpoint_due():  # the end saves after its eval
                self._save_checkpoint()

    def _batches(self) -> Iterator[Any]:
        """Micro-batches forever, epoch after epoch, from the saved position onward."""
        while True:
            loader = epoch_loader(
                self.data.train, self.sampler, self.epoch, batch_size=self.batch_size,
                skip_batches=self._batch_in_epoch, num_workers=self.recipe.data.num_workers,
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
            [float(self._signal or 0), float(self.should_stop), float(self.stop_failed)],
            device=self.device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        if flags[0] and self._signal is None:
            self._signal = int(flags[0].item())
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

    def _nan_stop(self, value: float) -> None:
        prev = f"; the last good checkpoint is {self._last_checkpoint}" \
            if self._last_checkpoint else "; no checkpoint was saved before it"
        raise RunError(
            f"loss became {value} at step {self.step}: training stopped and no checkpoint "
            f"was written for it{prev}. Lower optim.lr, set trainer.clip, or use "
            "trainer.precision=fp32"
        )

    # ------------------------------------------------------------ eval/save
    def run_eval(self) -> dict[str, float]:
        """Evaluate on the eval split, log, and tell the callbacks."""
        if self.data.eval is None:
            return {}
        r = self.recipe
        loader = eval_loader(
            self.data.eval, batch_size=r.data.eval_batch_size or r.data.batch_size,
            rank=self.env.rank, world_size=self.env.world_size, num_workers=r.data.num_workers,
        )
        eval_model = self._train_model if dist_utils.is_sharded(self._train_model) else self.model
        out = evaluate(
            eval_model, loader, inputs=r.model_inputs, losses=self.losses,
            metrics=self.metrics, env=self.env, autocast=self.precision.autocast,
            max_batches=r.trainer.eval_batches,
        )
        self.last_eval = out
        self.logger.log(out, self.step)
        self.callbacks.on_eval_end(self, self.step, out)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (see CheckpointManager for the format)."""
        from stoker.train.rng import capture_rng_state

        return {
            "model": dist_utils.full_model_state(self._train_model),
            "optimizer": dist_utils.full_optim_state(self._train_model, self.optimizer),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.state_dict(),
            "rng": capture_rng_state(),
            "callbacks": self.callbacks.state_dict(),
            "trainer": {"step": self.step, "epoch": self.epoch,
                        "batch_in_epoch": self._batch_in_epoch, "max_steps": self.max_steps},
            "data": self.sampler.state_dict(consumed=self._batch_in_epoch * self.batch_size),
            "config": self.config,
        }

    def save_checkpoint(self) -> Path | None:
        """Save now (callbacks may call it); rank 0 writes, every rank takes part."""
        return self._save_checkpoint()

    def _save_checkpoint(self) -> Path | None:
        if self._last_save_step == self.step:
            return self._last_checkpoint
        state = self.state_dict()  # collective under FSDP: every rank builds it
        path = None
        if self.is_rank_zero:
            self.callbacks.on_checkpoint_save(self, state)
            metrics = {**self.last_metrics, **self.last_eval}
            path = self.checkpoints.save(self.step, state, metrics=metrics)
            log.info("saved checkpoint %s", path)
        dist_utils.barrier(self.env)
        self._last_save_step = self.step
        self._last_save_time = time.monotonic()
        self._last_checkpoint = path or self._last_checkpoint
        return path

    def _interrupted(self) -> Interrupted:
        name = signal.Signals(self._signal).name if self._signal else "signal"
        exc = Interrupted(
            f"{name} received: saved checkpoint at step {self.step} in {self.run_dir}; run "
            "the same command again to resume"
        )
        exc.exit_code = 128 + int(self._signal or 2)
        return exc

    # ---------------------------------------------------------------- finish
    def _finish(self) -> FitResult:
        t = self.recipe.trainer
        paused = t.stop_after_steps is not None and self.step >= t.stop_after_steps \
            and self.step < self.max_steps
        # A pause on an eval step evaluates too, as the uninterrupted run would at that step.
        if not paused or (t.eval_every and self.step % t.eval_every == 0):
            self.run_eval()
        ckpt = self._save_checkpoint()
        artifact = None
        if self.should_stop:
            status, msg = "stopped", f"stopped at step {self.step}: {self.stop_reason or 'a callback asked to stop'}"
        elif paused:
            status, msg = "paused", (f"stopped after step {self.step} "
                                     f"(trainer.stop_after_steps={t.stop_after_steps}); re-run "
                                     f"without it to continue to step {self.max_steps}")
        else:
            status, msg = "finished", f"finished at step {self.step}"
        if status != "paused":
            artifact = self._register_artifact()
        self.callbacks.on_fit_end(self)
        return FitResult(self.run_dir, status, self.step, self.max_steps,
                         metrics={**self.last_metrics, **self.last_eval},
                         checkpoint=self._last_checkpoint or ckpt, artifact=artifact,
                         message=msg)

    def _register_artifact(self) -> str | None:
        """Publish the trained model (rank 0) to the artifact registry."""
        if not (self.is_rank_zero and self.recipe.register_artifact):
            return None
        from stoker.artifacts.wire import register_trained_model

        data_path = self._data_input()
        art = register_trained_model(
            self.run_dir, self.recipe.name, step=self.step,
            metrics={**self.last_metrics, **self.last_eval}, data_path=data_path,
        )
        uri = getattr(art, "uri", None) or str(art)
        log.info("registered model artifact %s", uri)
        return uri

    def _data_input(self) -> str | None:
        """What the model's data input is for lineage: an ``art://`` URI or a directory.

        The built-in corpus is published once as ``stoker-corpus-<kind>`` (a no-op when a
        version with the same content fingerprint exists); a prepared directory is linked
        through the sidecar ``stoker data prepare --register`` left in it; data resolved
        from ``${art:...}`` is already recorded as used by the resolver.
        """
        if self.data.path is None:
            return None
        spec = str(getattr(self.recipe.data, "path", "") or "")
        if spec.startswith("builtin:"):
            from stoker.artifacts.wire import register_builtin_dataset
            from stoker.errors import ArtifactError, RegistryError

            try:
                return register_builtin_dataset(self.data.path, spec.split(":", 1)[1] or "char").uri
            except (ArtifactError, RegistryError, OSError) as exc:
                log.warning("built-in dataset not registered (the model's lineage stops at "
                            "the model): %s", exc)
                return None
        return str(self.data.path)

    @contextlib.contextmanager
    def _signal_flags(self) -> Iterator[None]:
        """SIGINT/SIGTERM/SIGUSR1 set a flag; the loop saves and exits at the step boundary.

        A second Ctrl-C interrupts at once.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signum

        old = {s: signal.signal(s, handler) for s in _SIGNALS}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _key_args(node: Any) -> dict[str, str]:
    """Arguments of a loss/metric node that hold key paths (``preds.x``/``batch.y``)."""
    if not isinstance(node, Mapping):
        return {}
    return {
        k: v for k, v in node.items()
        if not k.startswith("_") and isinstance(v, str) and v.split(".")[0].split("[")[0]
        in ("batch", "preds", "step")
    }


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
