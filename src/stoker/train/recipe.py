"""The typed schema of a training recipe (Pydantic v2, no torch import).

A recipe is a tree of plain data; this schema says which keys exist, their types and
limits, so ``stoker train ... --dryrun`` catches a typo or a ``batch_size=0`` before
anything is built. Sections that name a Python callable (``optim``, ``callbacks``,
``losses``, ``metrics``) stay ``_target_`` dicts and are built later by
``stoker.config.build``; they are checked against the callable's signature by
``stoker.config.validate``.

The ``model`` and ``data`` sections are open: :func:`recipe_schema` builds the schema when
a recipe is validated, with a discriminated union over every registered model architecture
(:func:`stoker.models.register_model`) and data kind (:func:`register_data`) plus a
``_target_`` node for any ``nn.Module`` / dataset, so the user's modules named in
``imports:`` take part. :class:`TrainRecipe` itself knows the built-ins only; validate
with ``recipe_schema()``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from stoker.models.config import ModelConfig, TargetModelConfig

__all__ = [
    "DATA_REGISTRY",
    "CheckpointConfig",
    "DataConfig",
    "DataSpec",
    "DigitsDataConfig",
    "InitFromConfig",
    "ScheduleConfig",
    "TargetDataConfig",
    "TokenDataConfig",
    "TrainerConfig",
    "TrainRecipe",
    "recipe_schema",
    "register_data",
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


class TargetDataConfig(BaseModel):
    """Any dataset: ``{_target_: my_pkg.MyDataset, <its arguments>, <loader keys>}``.

    ``_target_`` (a ``torch.utils.data.Dataset`` class or a function returning one) and
    its arguments make the training split; ``eval`` holds the arguments that differ for
    the evaluation split (or a whole ``_target_`` node; null: no evaluation), ``train``
    those only the training split gets. Items are dicts of tensors, or tuples named by
    ``fields``. The remaining keys, the ones below, belong to stoker, not to the dataset.

    A map-style dataset (``__len__`` + ``__getitem__``) is read in the order of the
    seeded, resumable sampler, so a resumed run sees exactly the batches it would have.
    An iterable one must follow the resume contract (``state_dict()`` /
    ``load_state_dict(state)``, see docs) unless ``resume=never``.
    """

    model_config = ConfigDict(extra="allow")
    # keys of the node read by stoker, not passed to the dataset (config validation skips
    # them when it checks the target's signature)
    __stoker_node_keys__: ClassVar[frozenset[str]] = frozenset({
        "train", "eval", "fields", "collate", "batch_size", "eval_batch_size",
        "num_workers", "shuffle"})

    train: dict[str, Any] = Field(
        default_factory=dict, description="Arguments only the training split gets.")
    eval: dict[str, Any] | None = Field(
        default_factory=dict,
        description="Arguments of the eval split that differ from the training split's "
        "(e.g. {split: valid}), or a whole `_target_` node; null: no evaluation.")
    fields: list[str] | None = Field(
        None, description="Names of the items of a dataset that returns tuples.")
    collate: dict[str, Any] | None = Field(
        None, description="`_target_` node of the collate function (list of items -> "
        "batch); None: torch's default_collate.")
    batch_size: int = Field(32, gt=0, description="Items per micro-batch on each process.")
    eval_batch_size: int | None = Field(None, gt=0, description="None means batch_size.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    shuffle: bool = Field(True, description="Shuffle a map-style dataset each epoch.")

    @property
    def type(self) -> str:
        """Data kind, as the typed configs have it: ``_target_``."""
        return "_target_"

    @property
    def train_split(self) -> str:
        return "train"

    @property
    def eval_split(self) -> str | None:
        return None if self.eval is None else "eval"

    def dataset_node(self, split: str = "train") -> dict[str, Any] | None:
        """The ``_target_`` node of a split's dataset (None: that split is off)."""
        import copy

        extra = copy.deepcopy(self.model_extra or {})
        overlay = copy.deepcopy(self.train if split == "train" else self.eval)
        if overlay is None:
            return None
        if "_target_" in overlay:
            return overlay
        return {**extra, **overlay}


@dataclass(frozen=True)
class DataSpec:
    """A registered data kind: its typed config and the function that opens it."""

    name: str
    config_cls: type[BaseModel]
    build: str | Callable[..., Any]  # "module:function" (cfg, model_cfg, seed=) -> DataBundle

    def builder(self) -> Callable[..., Any]:
        if isinstance(self.build, str):
            import importlib

            mod, _, attr = self.build.partition(":")
            return getattr(importlib.import_module(mod), attr)
        return self.build


DATA_REGISTRY: dict[str, DataSpec] = {}


def register_data(name: str, config_cls: type[BaseModel], build: str | Callable[..., Any]
                  ) -> DataSpec:
    """Register a data kind: ``data: {type: <name>, ...}`` in a recipe is parsed with
    ``config_cls`` (which declares ``type: Literal[name] = name``) and opened by
    ``build(cfg, model_cfg, seed=...)`` returning a
    :class:`stoker.train.data_setup.DataBundle`. ``tokens`` and ``digits`` are the
    built-in entries; ``_target_`` data needs no registration."""
    from stoker.errors import ConfigError

    field = getattr(config_cls, "model_fields", {}).get("type")
    if field is None or field.default != name:
        raise ConfigError(f"register_data({name!r}, ...): {config_cls.__name__} must declare "
                          f"`type: Literal[{name!r}] = {name!r}`")
    spec = DataSpec(name, config_cls, build)
    DATA_REGISTRY[name] = spec
    return spec


register_data("tokens", TokenDataConfig, "stoker.train.data_setup:build_token_data")
register_data("digits", DigitsDataConfig, "stoker.train.data_setup:build_digits_data")


def _data_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return "_target_" if "_target_" in value and "type" not in value else value.get("type")
    return getattr(value, "type", None)


def data_config_union() -> Any:
    """The ``data`` section's type: every registered kind (by ``type``) or a ``_target_``."""
    members = [Annotated[spec.config_cls, Tag(name)] for name, spec in DATA_REGISTRY.items()]
    members.append(Annotated[TargetDataConfig, Tag("_target_")])
    return Annotated[Union[tuple(members)], Discriminator(_data_tag)]  # type: ignore[valid-type]


DataConfig = Annotated[Union[TokenDataConfig, DigitsDataConfig], Field(discriminator="type")]
"""The built-in data kinds (the recipe's ``data`` is :func:`data_config_union`)."""


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


class InitFromConfig(_Strict):
    """Weights to start from (fine-tuning): loaded before step 0, never a resume.

    ``init_from: PATH`` is short for ``init_from: {path: PATH}``.
    """

    path: str = Field(
        description="A .stoker archive, a run or checkpoint step directory, art://NAME[:TAG] "
        "or hf:DIR (a local Hugging Face Llama directory)."
    )
    ignore: list[str] = Field(
        default_factory=list,
        description="Globs of weight names not to load (they keep this recipe's fresh "
        "init), e.g. ['lm_head.*']; a glob that matches no weight is an error.",
    )
    strict: bool = Field(
        True, description="Refuse weights the model lacks and model weights the source "
        "lacks; false loads what matches and lists the rest in the log.")
    resize_vocab: bool = Field(
        False, description="Allow a vocabulary of another size: copy the overlapping "
        "embedding/output rows, keep the fresh init for the others.")


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
    allow_changes: list[str] = Field(
        default_factory=list,
        description="Settings that may differ from the checkpoint's run on a resume in "
        "place (optim.lr, data.batch_size, world_size, or a whole section such as optim); "
        "each change is recorded in the run's trajectory_changes.json and config.yaml. A "
        "permission for this resume only: config.yaml does not keep it.",
    )
    imports: list[str] = Field(
        default_factory=list,
        description="Modules imported before the recipe is validated (the user's models, "
        "datasets, losses, metrics, callbacks; they register themselves).",
    )
    init_from: InitFromConfig | str | None = Field(  # a str becomes {path: str} (validator)
        None, description="Start from these weights (fine-tuning; fresh optimizer, "
        "schedule and step 0): PATH or {path, ignore, strict, resize_vocab}.")
    model: Union[ModelConfig, TargetModelConfig]  # recipe_schema(): every registered one
    data: Union[DataConfig, TargetDataConfig]  # recipe_schema(): every registered one
    model_inputs: dict[str, str] = Field(
        default_factory=lambda: {"input_ids": "batch.input_ids"},
        description="Model forward argument -> key path (Kauldron-style).",
    )
    model_outputs: list[str] | None = Field(
        None,
        description="Names of the items of a forward that returns a tuple (preds.<name>); "
        "None: a dict is kept as is and a tensor is preds.logits.",
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

    @field_validator("init_from", mode="before")
    @classmethod
    def _init_from_path(cls, v: Any) -> Any:
        return InitFromConfig(path=v) if isinstance(v, str) else v

    @field_validator("output_dir")
    @classmethod
    def _printable_output_dir(cls, v: str | None) -> str | None:
        """A control character in output_dir is refused with the other config problems
        (exit 2, before anything is created; see :func:`stoker.atomic.control_char_problem`)."""
        from stoker.atomic import control_char_problem

        problem = control_char_problem(v, "output_dir") if v else None
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainRecipe:
        if not self.losses:
            raise ValueError("losses is empty: a recipe needs at least one loss to train on")
        arch = getattr(self.model, "architecture", None)
        kind = getattr(self.data, "type", None)
        if arch == "cnn" and kind in ("tokens",):
            raise ValueError("model.architecture=cnn trains on image data (data.type=digits)")
        if arch in ("gpt", "rnn") and kind == "digits":
            raise ValueError(
                f"model.architecture={arch} is a language model and needs "
                "token data (data.type=tokens)"
            )
        if self.checkpoint.format == "sharded" and self.trainer.distributed != "fsdp2":
            raise ValueError(
                "checkpoint.format=sharded writes FSDP2 shards and needs "
                f"trainer.distributed=fsdp2 (got {self.trainer.distributed}); use "
                "checkpoint.format=auto or full with DDP")
        seq = getattr(self.data, "seq_len", None)
        max_len = getattr(self.model, "max_seq_len", None)
        if isinstance(seq, int) and isinstance(max_len, int) and seq > max_len:
            raise ValueError(
                f"data.seq_len={seq} exceeds model.max_seq_len={max_len}; raise "
                "model.max_seq_len or lower data.seq_len"
            )
        return self


_SCHEMAS: dict[tuple[Any, ...], type[TrainRecipe]] = {}


def recipe_schema() -> type[TrainRecipe]:
    """The recipe schema for the architectures and data kinds registered now.

    A subclass of :class:`TrainRecipe` whose ``model`` and ``data`` are unions built from
    the registries (cached per registry content), so a user's architecture registered by a
    module in ``imports:`` validates like a built-in one.
    """
    from pydantic import create_model

    from stoker.models.registry import MODEL_REGISTRY, model_config_union

    key = (tuple((n, s.config_cls) for n, s in MODEL_REGISTRY.items()),
           tuple((n, s.config_cls) for n, s in DATA_REGISTRY.items()))
    schema = _SCHEMAS.get(key)
    if schema is None:
        schema = create_model(  # type: ignore[call-overload]
            "TrainRecipe", __base__=TrainRecipe, __module__=__name__,
            model=(model_config_union(), Field(description="A registered architecture "
                   "(by `architecture`) or a `_target_` node for any nn.Module.")),
            data=(data_config_union(), Field(description="A registered data kind (by "
                  "`type`) or a `_target_` node for any dataset.")),
        )
        _SCHEMAS[key] = schema
    return schema
