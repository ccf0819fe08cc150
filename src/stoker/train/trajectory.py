"""The trajectory fingerprint: what a checkpoint's run was, so a resume cannot become another.

A resume continues the steps of the run that saved the checkpoint. Only settings that do not
change what the next step computes may differ (``trainer.max_steps``, checkpointing, loggers,
callbacks, evaluation, log cadence): a different learning rate, batch shape, tokenizer or
optimizer silently makes a run whose ``config.yaml`` claims values that never applied to its
first steps, and whose weights no uninterrupted run with that config would reproduce.

So every checkpoint records, under the state key :data:`TRAJECTORY`, the resolved values
that decide the trajectory, as flat dotted keys (``optim.lr``, ``model.n_heads``,
``data.fingerprint``...); a resume compares them with the recipe it is about to run
(:func:`compare`) and stops (:class:`TrajectoryMismatch`, exit 2) before anything is written
when one differs, unless the recipe's ``allow_changes`` names it or the resume branches into
another run directory (``resume=PATH output_dir=NEW``). A change that goes ahead is recorded
in the run directory (:data:`CHANGES_FILE`) and shown at the top of ``config.yaml``, so the
record never claims that a value applied from step 0 when it did not.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoker.errors import UserError

__all__ = [
    "CHANGES_FILE",
    "FREE_KEYS",
    "MACHINE",
    "TRAJECTORY",
    "Change",
    "TrajectoryMismatch",
    "compare",
    "config_notes",
    "refused_changes",
    "trajectory_fingerprint",
]

TRAJECTORY = "trajectory"  # checkpoint state key of the fingerprint
MACHINE = "machine"  # checkpoint state key of the machine fingerprint it was saved on
CHANGES_FILE = "trajectory_changes.json"  # a run directory's record of changes on resume
# Recorded (a change is noted in the run's record) but never refused: continuing a run to
# more steps is the ordinary use of a resume.
FREE_KEYS = frozenset({"trainer.max_steps"})
# A change of these cannot be allowed in place: the run directory keeps its tokenizer/
# (samples and the published model would decode with the old map). Branch instead.
NOT_IN_PLACE = frozenset({"data.tokenizer_sha256"})
# Keys of the data section that do not decide the trajectory (evaluation, loader processes,
# where the files are: their identity is data.fingerprint) or are replaced by an identity.
_DATA_SKIP = frozenset({"path", "eval_batch_size", "eval_split", "eval", "num_workers",
                        "tokenizer"})


class TrajectoryMismatch(UserError):
    """A resume whose settings differ from the checkpoint's run (exit 2, nothing written)."""

    def __init__(self, message: str, changes: Sequence[Change] = ()) -> None:
        super().__init__(message)
        self.changes = list(changes)


@dataclass(frozen=True)
class Change:
    """One key whose recorded value differs from the one this run would use."""

    key: str
    old: Any
    new: Any

    def line(self) -> str:
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}"


_UNSET = object()


def _show(v: Any) -> str:
    return "(unset)" if v is _UNSET else json.dumps(v, default=str)


def _plain(value: Any) -> Any:
    """JSON-shaped (tuples become lists), as a value reads back from ``state.json``."""
    return json.loads(json.dumps(value, default=str))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def tokenizer_sha256(tokenizer: Any) -> str | None:
    """A hash of what a tokenizer maps (its description and its table), not of its size:
    two tokenizers with the same vocabulary size but another map must differ."""
    if tokenizer is None:
        return None
    h = hashlib.sha256()
    describe = getattr(tokenizer, "describe", None)
    h.update(json.dumps(describe() if callable(describe) else type(tokenizer).__name__,
                        sort_keys=True, default=str).encode())
    chars = getattr(tokenizer, "chars", None)
    if chars is not None:
        h.update("".join(chars).encode("utf-8", "surrogatepass"))
    tok = getattr(tokenizer, "tok", None)
    if tok is not None and hasattr(tok, "to_str"):
        h.update(tok.to_str().encode())
    model_bytes = getattr(tokenizer, "model_bytes", None)
    if isinstance(model_bytes, (bytes, bytearray)):
        h.update(model_bytes)
    return h.hexdigest()


def data_fingerprint(path: Path | None) -> str | None:
    """The prepared dataset's own fingerprint (``metadata.json``), or a hash of that file
    when an older prepare wrote none; None for data without a directory."""
    if path is None:
        return None
    meta_path = Path(path) / "metadata.json"
    try:
        raw = meta_path.read_bytes()
    except OSError:
        return None
    try:
        fp = json.loads(raw).get("fingerprint")
    except (ValueError, AttributeError):
        fp = None
    return fp if isinstance(fp, str) and fp else hashlib.sha256(raw).hexdigest()


def trajectory_fingerprint(recipe: Any, *, data: Any, vocab_size: int | None,
                           max_steps: int, world_size: int, device_type: str) -> dict[str, Any]:
    """The flat ``key -> value`` record of everything that decides ``recipe``'s steps.

    ``data`` is the opened :class:`~stoker.train.data_setup.DataBundle` (its dataset
    directory and tokenizer give the identities), ``vocab_size`` the one the model was
    built with, ``max_steps`` the resolved length (epochs counted into steps).
    """
    out: dict[str, Any] = {}
    model = recipe.model.model_dump(mode="json", by_alias=True)
    if vocab_size is not None and model.get("vocab_size") is None and "architecture" in model:
        model["vocab_size"] = vocab_size
    _flatten("model", model, out)
    data_cfg = recipe.data.model_dump(mode="json", by_alias=True)
    for k in sorted(set(data_cfg) - _DATA_SKIP):
        _flatten(f"data.{k}", data_cfg[k], out)
    out["data.fingerprint"] = data_fingerprint(getattr(data, "path", None))
    out["data.tokenizer_sha256"] = tokenizer_sha256(getattr(data, "tokenizer", None))
    _flatten("optim", recipe.optim, out)
    _flatten("schedule", recipe.schedule.model_dump(mode="json"), out)
    _flatten("losses", recipe.losses, out)
    _flatten("model_inputs", recipe.model_inputs, out)
    out["model_outputs"] = recipe.model_outputs
    out["seed"] = recipe.seed
    t = recipe.trainer
    out["trainer.grad_accum"] = t.grad_accum
    out["trainer.clip"] = t.clip
    out["trainer.precision"] = t.precision
    if device_type == "cpu":  # threads split CPU reductions; GPUs do not use them
        out["trainer.num_threads"] = t.num_threads
    out["trainer.max_steps"] = int(max_steps)
    out["world_size"] = int(world_size)
    return _plain(out)


def compare(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[Change]:
    """Every key whose value differs, in a stable order (missing on one side included)."""
    changes = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, _UNSET), current.get(key, _UNSET)
        if old != new:
            changes.append(Change(key, old, new))
    return changes


def _allows(pattern: str, key: str) -> bool:
    return key == pattern or key.startswith(pattern + ".")


def unknown_allowances(allow: Iterable[str], keys: Iterable[str]) -> list[str]:
    """Entries of ``allow_changes`` that name no trajectory key (a typo must not pass)."""
    keys = list(keys)
    return [a for a in allow if not any(_allows(a, k) for k in keys)]


def refused_changes(changes: Sequence[Change], allow: Iterable[str], *,
                    recorded: Mapping[str, Any] | None = None,
                    current: Mapping[str, Any] | None = None) -> list[Change]:
    """The changes a resume in place must refuse: not free, not named by ``allow``.

    Given both fingerprints, a resume at another number of processes that keeps the global
    batch (2 processes x 4 -> 1 x 8) is free: the same samples make each optimizer step, so
    it is the same run split differently (an elastic resume), not another one."""
    allow = list(allow)
    free = set(FREE_KEYS)
    if recorded is not None and current is not None and _resplit(recorded, current):
        free |= RESPLIT_KEYS
    return [c for c in changes if c.key not in free
            and (c.key in NOT_IN_PLACE or not any(_allows(a, c.key) for a in allow))]


# The keys a resume may change together when only the split of one global batch over the
# processes changes (see :func:`refused_changes`).
RESPLIT_KEYS = frozenset({"data.batch_size", "world_size"})


def _resplit(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    gb_old, gb_new = global_batch(recorded), global_batch(current)
    return (gb_old is not None and gb_old == gb_new
            and recorded.get("world_size") != current.get("world_size"))


def global_batch(fp: Mapping[str, Any]) -> int | None:
    """Samples per optimizer step of a fingerprint: batch * grad_accum * processes."""
    try:
        return int(fp["data.batch_size"]) * int(fp["trainer.grad_accum"]) * int(fp["world_size"])
    except (KeyError, TypeError, ValueError):
        return None


def mismatch_message(path: Path, step: int, refused: Sequence[Change],
                     recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """What differs, that nothing was written, and the three ways to go on on purpose."""
    lines = [f"checkpoint {path} (step {step}) was saved by a run with other settings; "
             "resuming it with these would continue another run than its record describes:"]
    lines += [f"  {c.line()}" for c in refused]
    old_gb, new_gb = global_batch(recorded), global_batch(current)
    if old_gb is not None and new_gb is not None and old_gb != new_gb:
        lines.append(f"  (global batch: {old_gb} -> {new_gb} samples per optimizer step)")
    names = ",".join(c.key for c in refused if c.key not in NOT_IN_PLACE)
    fixes = ["Nothing was written. To go on with these changes on purpose:",
             f"  - branch: resume={path} output_dir=NEW_DIR keeps the weights, optimizer and "
             "step and starts a new record of the changed run there;"]
    if names:
        fixes.append(f"  - or continue this run with them: allow_changes=[{names}] (the "
                     f"change is recorded in {CHANGES_FILE} and at the top of config.yaml);")
    if any(c.key in NOT_IN_PLACE for c in refused):
        fixes.append("  - a tokenizer change cannot be allowed in place (this run's tokenizer/ "
                     "would decode with the old map): branch, or start afresh;")
    fixes.append("  - or start afresh: resume=never.")
    return "\n".join(lines + fixes)


def change_entry(step: int, source: Path, changes: Sequence[Change], *, how: str
                 ) -> dict[str, Any]:
    """One record of :data:`CHANGES_FILE`: at which step, from where, what changed, and why
    it was let through (``allow_changes``, ``branch``, or ``free`` for max_steps)."""
    return {"step": int(step), "from": str(source), "how": how,
            "changes": {c.key: [None if c.old is _UNSET else c.old,
                                None if c.new is _UNSET else c.new] for c in changes}}


def read_changes(run_dir: Path) -> list[dict[str, Any]]:
    """The run directory's change records (an unreadable file counts as none)."""
    try:
        data = json.loads((Path(run_dir) / CHANGES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    entries = data.get("changes") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def config_notes(entries: Sequence[Mapping[str, Any]]) -> str:
    """Comment lines for the top of ``config.yaml``: which values did not apply from step 0."""
    out = []
    for e in entries:
        changed = e.get("changes") or {}
        what = "; ".join(f"{k} {json.dumps(v[0], default=str)} -> {json.dumps(v[1], default=str)}"
                         for k, v in changed.items()
                         if isinstance(v, (list, tuple)) and len(v) == 2)
        if e.get("how") == "branch":
            head = f"continued at step {e.get('step')} from {e.get('from')}"
            out.append(head + (f", with changes: {what}" if what else ""))
        elif what:
            out.append(f"changed on resume at step {e.get('step')}: {what} (values before "
                       f"step {e.get('step')} were the old ones; see {CHANGES_FILE})")
    # one comment line each, whatever a path holds (a newline would end the comment)
    return "".join("# " + "".join(ch if ch.isprintable() else " " for ch in line) + "\n"
                   for line in out)
