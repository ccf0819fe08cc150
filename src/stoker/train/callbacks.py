"""Callbacks: small objects the trainer calls at fixed points of the loop.

Hooks, in the order a run meets them::

    on_fit_start(trainer)
        on_step_start(trainer, step)         # step = optimizer steps done so far
        on_step_end(trainer, step, metrics)  # step = steps done, including this one
        on_eval_end(trainer, step, metrics)
        on_checkpoint_save(trainer, state)   # state = the dict about to be written
    on_fit_end(trainer)
    on_checkpoint_load(trainer, state)       # when resuming, before the loop
    on_exception(trainer, exc)               # the run is failing with exc

A callback sees the trainer as a :class:`~stoker.train.view.TrainerView` (a Protocol: the
attributes it may read and set, and ``save_checkpoint()``/``run_eval()``); the rest of the
trainer is its private loop state.

Per-step numbers (``LRMonitor``, ``Throughput``) are added to the ``metrics`` dict given to
``on_step_end``; the trainer logs that dict after the callbacks ran, so one step is one line
in ``metrics.jsonl``.

A callback that raises stops the run: :class:`CallbackList` wraps the exception in
:class:`~stoker.errors.RunError` naming the callback and the hook. Nothing is swallowed.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stoker.errors import RunError

if TYPE_CHECKING:  # pragma: no cover
    from stoker.train.view import TrainerView

__all__ = [
    "HOOKS",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "LRMonitor",
    "NaNGuard",
    "SampleGeneration",
    "Throughput",
    "request_stop",
    "stop_if_not_finite",
]

HOOKS = (
    "on_fit_start",
    "on_fit_end",
    "on_step_start",
    "on_step_end",
    "on_eval_end",
    "on_checkpoint_save",
    "on_checkpoint_load",
    "on_exception",
)


def request_stop(trainer: TrainerView, reason: str, *, failed: bool = False) -> None:
    """Ask the trainer to stop at the next step boundary.

    ``failed=False`` (early stopping): the trainer saves a checkpoint and ends normally.
    ``failed=True`` (a NaN loss): the trainer must *not* save the current state, so the last
    good checkpoint stays the latest, and it ends with ``RunError(trainer.stop_reason)``
    (exit code 1). The trainer reads ``trainer.stop_failed`` to tell the two apart.
    """
    trainer.should_stop = True
    trainer.stop_reason = reason
    if failed or not getattr(trainer, "stop_failed", False):
        trainer.stop_failed = failed


def stop_if_not_finite(
    trainer: TrainerView, step: int, metrics: Mapping[str, Any], keys: Iterable[str]
) -> str | None:
    """The one NaN stop: if any of ``keys`` in ``metrics`` is NaN or infinite, stop the run
    as failed (nothing saved; the last good checkpoint stays the latest) and return why.

    :class:`NaNGuard` calls it for its keys; the trainer calls it for the loss on every
    step, so a recipe without NaNGuard never trains on after its loss blew up.
    """
    bad = {}
    for k in keys:
        if k in metrics:
            v = float(metrics[k])
            if not math.isfinite(v):
                bad[k] = v
    if not bad:
        return None
    what = ", ".join(f"{k}={v}" for k, v in bad.items())
    ckpts = getattr(trainer, "checkpoints", None)
    last = ckpts.latest_finite() if ckpts is not None else None
    keep = (
        f"the last finite checkpoint is {last}; resume from it with resume={last} after "
        "lowering optim.lr or enabling gradient clipping (trainer.clip)"
        if last is not None
        else "no finite checkpoint was saved before it"
    )
    reason = (
        f"non-finite value at step {step}: {what}. Training stopped without saving "
        f"this state; {keep}"
    )
    request_stop(trainer, reason, failed=True)
    return reason


class Callback:
    """Base class: override the hooks you need; every hook is a no-op here.

    ``state_dict``/``load_state_dict`` carry whatever the callback needs to continue exactly
    after a resume (plain data: numbers, strings, lists, dicts).
    """

    #: name used in error messages and as the key of its state in checkpoints
    name: str | None = None

    def on_fit_start(self, trainer: TrainerView) -> None: ...

    def on_fit_end(self, trainer: TrainerView) -> None: ...

    def on_step_start(self, trainer: TrainerView, step: int) -> None: ...

    def on_step_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None: ...

    def on_checkpoint_save(self, trainer: TrainerView, state: dict[str, Any]) -> None: ...

    def on_checkpoint_load(self, trainer: TrainerView, state: Mapping[str, Any]) -> None: ...

    def on_exception(self, trainer: TrainerView, exc: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


def _cb_name(cb: Any) -> str:
    return getattr(cb, "name", None) or type(cb).__name__


class CallbackList:
    """Calls each hook on every callback in order; a failure becomes a named RunError."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks: list[Callback] = list(callbacks)

    def append(self, cb: Callback) -> None:
        self.callbacks.append(cb)

    def __iter__(self) -> Iterator[Callback]:
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def find(self, kind: type) -> Callback | None:
        """The first callback of a class (e.g. to read ``SampleGeneration.last_sample``)."""
        return next((cb for cb in self.callbacks if isinstance(cb, kind)), None)

    def _call(self, hook: str, trainer: TrainerView, *args: Any) -> None:
        for cb in self.callbacks:
            try:
                getattr(cb, hook)(trainer, *args)
            except Exception as exc:
                raise _wrap(cb, hook, exc) from exc

    def on_fit_start(self, trainer: TrainerView) -> None:
        self._call("on_fit_start", trainer)

    def on_fit_end(self, trainer: TrainerView) -> None:
        self._call("on_fit_end", trainer)

    def on_step_start(self, trainer: TrainerView, step: int) -> None:
        self._call("on_step_start", trainer, step)

    def on_step_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        self._call("on_step_end", trainer, step, metrics)

    def on_eval_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        self._call("on_eval_end", trainer, step, metrics)

    def on_checkpoint_save(self, trainer: TrainerView, state: dict[str, Any]) -> None:
        self._call("on_checkpoint_save", trainer, state)

    def on_checkpoint_load(self, trainer: TrainerView, state: Mapping[str, Any]) -> None:
        self._call("on_checkpoint_load", trainer, state)

    def on_exception(self, trainer: TrainerView, exc: BaseException) -> None:
        """Tell every callback (even after one fails), then raise the first failure."""
        first: RunError | None = None
        for cb in self.callbacks:
            try:
                cb.on_exception(trainer, exc)
            except Exception as err:
                if first is None:
                    first = _wrap(cb, "on_exception", err)
                    first.__cause__ = err
        if first is not None:
            raise first

    def _keys(self) -> list[str]:
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            n = _cb_name(cb)
            seen[n] = seen.get(n, 0) + 1
            keys.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        """``{callback name: its state}`` for the checkpoint's ``callbacks`` entry."""
        out = {}
        for key, cb in zip(self._keys(), self.callbacks):
            try:
                out[key] = cb.state_dict()
            except Exception as exc:
                raise _wrap(cb, "state_dict", exc) from exc
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore each callback that has saved state; new callbacks start fresh."""
        for key, cb in zip(self._keys(), self.callbacks):
            if key in state:
                try:
                    cb.load_state_dict(state[key])
                except Exception as exc:
                    raise _wrap(cb, "load_state_dict", exc) from exc


def _wrap(cb: Any, hook: str, exc: BaseException) -> RunError:
    return RunError(f"callback {_cb_name(cb)} failed in {hook}: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- built-ins


class EarlyStopping(Callback):
    """Stop when an evaluation metric stops improving.

    Checked after each evaluation: ``monitor`` (e.g. ``"val/loss"``) must improve by more
    than ``min_delta`` within ``patience`` evaluations. Its state (best value, evaluations
    without improvement) is checkpointed, so a resumed run stops at the same step as an
    uninterrupted one.
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        patience: int = 3,
        mode: Literal["min", "max"] = "min",
        min_delta: float = 0.0,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping min_delta must be >= 0, got {min_delta}")
        self.monitor = monitor
        self.patience = patience
        self.mode = mode
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_step: int | None = None
        self.wait = 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_eval_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise KeyError(
                f"monitored metric {self.monitor!r} is not among the evaluation metrics "
                f"({', '.join(sorted(metrics)) or 'none'}); set monitor to one of them"
            )
        value = float(metrics[self.monitor])
        if math.isnan(value):
            self.wait += 1
        elif self._improved(value):
            self.best, self.best_step, self.wait = value, step, 0
            return
        else:
            self.wait += 1
        if self.wait >= self.patience:
            request_stop(
                trainer,
                f"early stopping: {self.monitor} did not improve by more than {self.min_delta:g} "
                f"in {self.wait} evaluations (best {self.best} at step {self.best_step})",
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "wait": self.wait}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state.get("best")
        self.best_step = state.get("best_step")
        self.wait = int(state.get("wait", 0))


class LRMonitor(Callback):
    """Add the learning rate to each step's metrics: ``lr`` (group 0), ``lr/groupN`` too
    when the optimizer has several parameter groups."""

    def on_step_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        groups = trainer.optimizer.param_groups
        metrics["lr"] = float(groups[0]["lr"])
        if len(groups) > 1:
            for i, g in enumerate(groups):
                metrics[f"lr/group{i}"] = float(g["lr"])


class NaNGuard(Callback):
    """Stop the run when the loss or the gradient norm is NaN or infinite.

    It asks the trainer to stop *without* saving (``request_stop(failed=True)``), so the
    last checkpoint written before the blow-up stays the latest one and a re-run resumes
    from good weights. As a second line of defence it refuses any checkpoint save after it
    tripped. The trainer ends the run with ``RunError`` (exit 1) carrying the reason.
    """

    def __init__(self, keys: Iterable[str] = ("loss", "grad_norm")):
        self.keys = tuple(keys)
        self.tripped: str | None = None

    def on_step_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        reason = stop_if_not_finite(trainer, step, metrics, self.keys)
        if reason is not None:
            self.tripped = reason

    def on_checkpoint_save(self, trainer: TrainerView, state: dict[str, Any]) -> None:
        if self.tripped:
            raise RuntimeError(f"refusing to save a checkpoint after a {self.tripped}")


class Throughput(Callback):
    """Speed and memory per step, added to the step metrics.

    Reads from the step metrics the counts the trainer puts there for the whole optimizer
    step (all ranks, all micro-batches): ``num_tokens`` and ``num_samples``, and
    ``data_wait_s`` (time spent waiting for batches). Adds ``step_time_s``,
    ``tokens_per_s``, ``samples_per_s`` and ``peak_mem_mb`` (CUDA max allocated when the
    trainer runs on CUDA, else the process's peak resident memory).
    """

    def __init__(self) -> None:
        self._t0: float | None = None
        self._last_end: float | None = None

    def on_fit_start(self, trainer: TrainerView) -> None:
        self._t0 = None
        self._last_end = None

    def on_step_start(self, trainer: TrainerView, step: int) -> None:
        self._t0 = time.perf_counter()

    def on_step_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        start = self._t0 if self._t0 is not None else self._last_end
        self._t0 = None
        self._last_end = now
        if start is not None:
            dt = max(now - start, 1e-9)
            metrics["step_time_s"] = dt
            if "num_tokens" in metrics:
                metrics["tokens_per_s"] = float(metrics["num_tokens"]) / dt
            if "num_samples" in metrics:
                metrics["samples_per_s"] = float(metrics["num_samples"]) / dt
        metrics["peak_mem_mb"] = peak_memory_mb(getattr(trainer, "device", None))


def peak_memory_mb(device: Any = None) -> float:
    """Peak memory in MiB: CUDA max allocated on a CUDA device, else peak RSS of the process."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows: psutil's peak working set
        import psutil

        return float(getattr(psutil.Process().memory_info(), "peak_wset", 0)) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


class SampleGeneration(Callback):
    """Generate text from ``prompt`` every ``every_n_steps`` steps (and at the end).

    The text goes to ``run_dir/samples.jsonl`` (``{"step", "prompt", "completion",
    "text"}`` per line) and to the logger's ``log_text`` (TensorBoard shows it). The
    training RNG is saved and restored around generation, so turning samples on or off
    cannot change the training result. Runs on rank zero only, except for FSDP2-sharded
    models, whose forward is a collective: there every rank generates (rank zero writes);
    ``all_ranks=True`` forces that for other sharding schemes.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        prompt: str = "",
        max_new_tokens: int = 100,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int = 0,
        at_end: bool = True,
        all_ranks: bool = False,
    ):
        if every_n_steps < 1:
            raise ValueError(f"SampleGeneration every_n_steps must be >= 1, got {every_n_steps}")
        if max_new_tokens < 1:
            raise ValueError(f"SampleGeneration max_new_tokens must be >= 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"SampleGeneration temperature must be >= 0, got {temperature}")
        self.every_n_steps = every_n_steps
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self.at_end = at_end
        self.all_ranks = all_ranks
        self.last_sample: str | None = None
        self.last_step: int | None = None

    def _path(self, trainer: TrainerView) -> Path:
        return Path(trainer.run_dir) / "samples.jsonl"

    def on_fit_start(self, trainer: TrainerView) -> None:
        if getattr(trainer, "is_rank_zero", True):
            from stoker.track.loggers import truncate_jsonl_after

            # a resumed run regenerates samples after its checkpoint: drop the old ones
            truncate_jsonl_after(self._path(trainer), int(getattr(trainer, "step", 0)))

    def on_step_end(self, trainer: TrainerView, step: int, metrics: dict[str, float]) -> None:
        if step % self.every_n_steps == 0:
            self.sample(trainer, step)

    def on_fit_end(self, trainer: TrainerView) -> None:
        step = int(getattr(trainer, "step", 0))
        if self.at_end and self.last_step != step and not getattr(trainer, "stop_failed", False):
            self.sample(trainer, step)

    def sample(self, trainer: TrainerView, step: int) -> str | None:
        """Generate one sample now; returns the text (None when not on rank zero)."""
        from stoker.train.distributed import is_sharded

        rank_zero = getattr(trainer, "is_rank_zero", True)
        model = getattr(trainer, "model", None)
        if not rank_zero and not (self.all_ranks or (model is not None and is_sharded(model))):
            return None
        tok = getattr(trainer, "tokenizer", None)
        if tok is None:
            raise ValueError("sample generation needs a tokenizer, and this trainer has none")
        import torch

        from stoker.infer.generate import generate
        from stoker.models.unwrap import unwrap_model
        from stoker.train.rng import preserve_rng_state

        ids = list(tok.encode(self.prompt)) if self.prompt else []
        if not ids:
            ids = [int(getattr(tok, "eos_id", None) or 0)]
        model = unwrap_model(trainer.model)
        was_training = model.training
        device = getattr(trainer, "device", None) or "cpu"
        x = torch.tensor([ids], dtype=torch.long, device=device)
        try:
            model.eval()
            with preserve_rng_state(), torch.no_grad():
                out = generate(
                    model,
                    x,
                    self.max_new_tokens,
                    temperature=self.temperature,
                    top_k=self.top_k,
                    seed=self.seed + step,
                )
        finally:
            model.train(was_training)
        out_ids = [int(i) for i in out[0].tolist()]
        new_ids = out_ids[len(ids) :] if out_ids[: len(ids)] == ids else out_ids
        completion = tok.decode(new_ids)
        text = self.prompt + completion
        self.last_sample, self.last_step = text, step
        if not rank_zero:
            return text
        path = self._path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            rec = {"step": step, "prompt": self.prompt, "completion": completion, "text": text}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
        logger = getattr(trainer, "logger", None)
        log_text = getattr(logger, "log_text", None)
        if log_text is not None:
            log_text("samples", text, step)
        return text

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_step = state.get("last_step")
