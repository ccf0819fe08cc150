"""The typed schema of a training recipe (Pydantic v2, no torch import).

A recipe is a tree of plain data; this schema says which keys exist, their types and
limits, so ``stoker train ... --dryrun`` catches a typo or a ``batch_size=0`` before
anything is built. Sections that name a Python callable (``optim``, ``callbacks``,
``losses``, ``metrics``) stay ``_target_`` dicts and are built later by
``stoker.config.build``; they are checked against the callable's signature by
``stoker.config.validate``.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stoker.models.config import ModelConfig

__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "DigitsDataConfig",
    "ScheduleConfig",
    "TokenDataConfig",
    "TrainerConfig",
    "TrainRecipe",
]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never be dropped silently."""

    model_config = ConfigDict(extra="forbid")


class TokenDataConfig(_Strict):
    """Token windows from a directory made by ``stoker data prepare``."""

    type: Literal["tokens"] = Field("tokens", description="Data kind (discriminator).")
    path: str = Field(
        description="Prepared dataset directory, `${art:NAME,path}`, or `builtin:char` / "
        "`builtin:bpe` for the built-in corpus (prepared once, cached under $STOKER_HOME)."
    )
    seq_len: int = Field(128, gt=0, description="Tokens per training window.")
    batch_size: int = Field(32, gt=0, description="Windows per micro-batch on each process.")
    eval_batch_size: int | None = Field(None, gt=0, description="None means batch_size.")
    tokenizer: str | None = Field(
        None,
        description="Tokenizer type the recipe expects (`char`, `bpe`, ...); a dataset "
        "prepared with another one is refused. None accepts any.",
    )
    train_split: str = Field("train", description="Split to train on.")
    eval_split: str = Field("valid", description="Split evaluated every `trainer.eval_every`.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    shuffle: bool = Field(True, description="Shuffle training windows each epoch.")


class DigitsDataConfig(_Strict):
    """The 8x8 scikit-learn digits images (they ship inside scikit-learn)."""

    type: Literal["digits"] = Field("digits", description="Data kind (discriminator).")
    batch_size: int = Field(64, gt=0, description="Images per micro-batch on each process.")
    eval_batch_size: int | None = Field(None, gt=0, description="None means batch_size.")
    train_split: str = Field("train", description="Split to train on.")
    eval_split: str = Field("valid", description="Split evaluated every `trainer.eval_every`.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    shuffle: bool = Field(True, description="Shuffle training images each epoch.")


DataConfig = Annotated[Union[TokenDataConfig, DigitsDataConfig], Field(discriminator="type")]


class ScheduleConfig(_Strict):
    """Learning-rate schedule: linear warmup, then cosine (or constant/linear) decay."""

    kind: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay shape.")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warmup from 0 to optim.lr.")
    min_lr_ratio: float = Field(
        0.1, ge=0.0, le=1.0, description="Final LR as a fraction of optim.lr."
    )


class TrainerConfig(_Strict):
    """How long and how the loop runs."""

    max_steps: int | None = Field(
        None, ge=0, description="Optimizer steps to train; the LR schedule plans for it."
    )
    epochs: int | None = Field(
        None, gt=0, description="Train this many passes over the data when max_steps is None."
    )
    stop_after_steps: int | None = Field(
        None,
        ge=0,
        description="Stop (with a checkpoint) at this step while the schedule still plans "
        "for max_steps; re-run without it to continue.",
    )
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step.")
    clip: float | None = Field(1.0, gt=0, description="Max global grad norm; None: no clipping.")
    precision: Literal["fp32", "bf16-mixed", "fp16-mixed"] = Field(
        "fp32", description="fp32, bf16 autocast, or fp16 autocast with a GradScaler (CUDA)."
    )
    compile: bool = Field(False, description="Wrap the model in torch.compile.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when present, else CPU."
    )
    eval_every: int | None = Field(
        None, gt=0, description="Evaluate every N steps (and always at the end)."
    )
    eval_batches: int | None = Field(
        50, gt=0, description="Batches per evaluation; None: the whole eval split."
    )
    log_every: int = Field(10, gt=0, description="Write metrics every N steps.")
    distributed: Literal["ddp", "fsdp2"] = Field(
        "ddp", description="Strategy when started by torchrun with more than one process."
    )
    deterministic: bool = Field(
        False, description="torch.use_deterministic_algorithms (slower on GPU)."
    )
    num_threads: int | None = Field(None, gt=0, description="torch CPU threads; None: default.")

    @model_validator(mode="after")
    def _length(self) -> TrainerConfig:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set trainer.max_steps or trainer.epochs (how long to train)")
        return self


class CheckpointConfig(_Strict):
    """When checkpoints are written, how, and which are kept."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    every_steps: int | None = Field(500, gt=0, description="Save every N steps.")
    every_minutes: float | None = Field(None, gt=0, description="Save every N minutes.")
    keep_last: int | None = Field(3, gt=0, description="Keep the newest N; None keeps all.")
    keep_best: int | None = Field(None, gt=0, description="Also keep the N best by best_metric.")
    best_metric: str | None = Field("eval/loss", description="Metric key ranking 'best'.")
    best_mode: Literal["min", "max"] = Field("min", description="Whether lower is better.")
    fsync: bool = Field(True, description="fsync files before the commit marker.")
    allow_nonfinite: bool = Field(False, description="Resume from a checkpoint whose weights "
                                  "hold NaN/inf (debugging only; refused by default).")
    # `async` is a Python keyword: the field is async_save, the key users write is `async`.
    async_save: bool = Field(
        False, alias="async",
        description="Write checkpoints in the background while training goes on (one CPU "
        "staging copy; at most one save in flight; the commit marker appears when the write "
        "is complete; signals and the end of the run wait for it).")
    format: Literal["auto", "full", "sharded"] = Field(
        "auto",
        description="full: one process writes the whole state (single process, DDP). "
        "sharded: every rank writes its own shards with torch.distributed.checkpoint (needs "
        "trainer.distributed=fsdp2). auto: sharded under FSDP2 with several processes, "
        "else full.")


class TrainRecipe(_Strict):
    """A whole training recipe: the root of `stoker train` configs."""

    name: str = Field("run", description="Run name: outputs/<name>/<timestamp>/ and artifact.")
    seed: int = Field(0, description="Seeds python, numpy and torch before the model is built.")
    output_dir: str | None = Field(
        None, description="Run directory; None makes outputs/<name>/<timestamp>/."
    )
    resume: str = Field(
        "auto",
        description="auto (latest checkpoint in output_dir), never (fresh, new run dir), "
        "latest (newest run of this name), or a checkpoint/run directory PATH.",
    )
    model: ModelConfig
    data: DataConfig
    model_inputs: dict[str, str] = Field(
        default_factory=lambda: {"input_ids": "batch.input_ids"},
        description="Model forward argument -> key path (Kauldron-style).",
    )
    losses: dict[str, Any] = Field(
        default_factory=dict, description="name -> loss node (`_target_` + key paths)."
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="name -> metric node (`_target_` + key paths)."
    )
    optim: dict[str, Any] = Field(
        default_factory=lambda: {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3},
        description="Optimizer node; built as a partial and called with the parameters.",
    )
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    trainer: TrainerConfig
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    loggers: list[str] = Field(
        default_factory=lambda: ["jsonl", "tensorboard"],
        description="Metric sinks: jsonl (always added), tensorboard, wandb, mlflow.",
    )
    callbacks: dict[str, Any] = Field(
        default_factory=dict, description="name -> callback node (`_target_` + arguments)."
    )
    register_artifact: bool = Field(
        True, description="Publish the trained model to the artifact registry at the end."
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainRecipe:
        if not self.losses:
            raise ValueError("losses is empty: a recipe needs at least one loss to train on")
        if self.model.architecture == "cnn" and self.data.type != "digits":
            raise ValueError("model.architecture=cnn trains on image data (data.type=digits)")
        if self.model.architecture != "cnn" and self.data.type != "tokens":
            raise ValueError(
                f"model.architecture={self.model.architecture} is a language model and needs "
                "token data (data.type=tokens)"
            )
        if self.checkpoint.format == "sharded" and self.trainer.distributed != "fsdp2":
            raise ValueError(
                "checkpoint.format=sharded writes FSDP2 shards and needs "
                f"trainer.distributed=fsdp2 (got {self.trainer.distributed}); use "
                "checkpoint.format=auto or full with DDP")
        seq = getattr(self.data, "seq_len", None)
        max_len = getattr(self.model, "max_seq_len", None)
        if seq is not None and max_len is not None and seq > max_len:
            raise ValueError(
                f"data.seq_len={seq} exceeds model.max_seq_len={max_len}; raise "
                "model.max_seq_len or lower data.seq_len"
            )
        return self
