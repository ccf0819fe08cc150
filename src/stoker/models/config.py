"""Typed configs of the built-in models (Pydantic v2, no torch import).

Kept apart from the model code so that validating a recipe (``stoker train ... --dryrun``)
does not pay for ``import torch``. Each config carries an ``architecture`` literal; the
model section of a recipe is the discriminated union :data:`ModelConfig` on that field.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    """Unknown keys are errors (a typo must not be silently dropped)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GPTConfig(_Strict):
    """A Llama-style decoder: RMSNorm, rotary embeddings, SwiGLU, grouped-query attention."""

    architecture: Literal["gpt"] = Field("gpt", description="Model family tag (discriminator).")
    vocab_size: int | None = Field(
        None, gt=0, description="Vocabulary size; None means: take it from the prepared dataset."
    )
    n_layers: int = Field(4, gt=0, description="Number of transformer blocks.")
    dim: int = Field(256, gt=0, description="Residual stream width (hidden size).")
    n_heads: int = Field(4, gt=0, description="Number of query heads; must divide `dim`.")
    n_kv_heads: int | None = Field(
        None,
        gt=0,
        description="Key/value heads for grouped-query attention; must divide `n_heads`. "
        "None means n_heads (plain multi-head attention).",
    )
    max_seq_len: int = Field(
        256, gt=0, description="Longest context the model attends over (rotary table size)."
    )
    ffn_hidden: int | None = Field(
        None,
        gt=0,
        description="SwiGLU hidden width. None means 8/3*dim rounded up to `multiple_of` "
        "(same parameter count as a 4*dim GELU MLP).",
    )
    multiple_of: int = Field(32, gt=0, description="Rounding of the default SwiGLU width.")
    norm_eps: float = Field(1e-5, gt=0, description="Epsilon of RMSNorm.")
    rope_theta: float = Field(10000.0, gt=0, description="Base of the rotary frequencies.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on attention weights and residual branches."
    )
    tie_weights: bool = Field(True, description="Share the token embedding and output head.")
    bias: bool = Field(False, description="Add biases to the linear layers (Llama has none).")
    init_std: float = Field(0.02, gt=0, description="Std of the normal init of weights.")

    @model_validator(mode="after")
    def _check_shapes(self) -> GPTConfig:
        if self.dim % self.n_heads:
            raise ValueError(
                f"dim={self.dim} is not divisible by n_heads={self.n_heads}; "
                f"pick n_heads among the divisors of dim"
            )
        head_dim = self.dim // self.n_heads
        if head_dim % 2:
            raise ValueError(
                f"head size dim/n_heads={head_dim} is odd; rotary embeddings need an even "
                "head size"
            )
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} "
                "(each key/value head serves a whole group of query heads)"
            )
        return self

    @property
    def kv_heads(self) -> int:
        """Effective number of key/value heads."""
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden_dim(self) -> int:
        """Effective SwiGLU hidden width."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        h = int(8 * self.dim / 3)
        return self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)


class RNNConfig(_Strict):
    """An LSTM or GRU language model."""

    architecture: Literal["rnn"] = Field("rnn", description="Model family tag (discriminator).")
    cell: Literal["lstm", "gru"] = Field("lstm", description="Recurrent cell type.")
    vocab_size: int | None = Field(
        None, gt=0, description="Vocabulary size; None means: take it from the prepared dataset."
    )
    n_layers: int = Field(2, gt=0, description="Stacked recurrent layers.")
    dim: int = Field(256, gt=0, description="Embedding and hidden state width.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout on embeddings, between layers and on outputs."
    )
    tie_weights: bool = Field(True, description="Share the token embedding and output head.")
    init_std: float = Field(0.02, gt=0, description="Std of the normal init of embeddings.")


class CNNConfig(_Strict):
    """A small convolutional image classifier (default sizes fit the 8x8 sklearn digits)."""

    architecture: Literal["cnn"] = Field("cnn", description="Model family tag (discriminator).")
    in_channels: int = Field(1, gt=0, description="Channels of the input images.")
    image_size: int = Field(8, gt=0, description="Height and width of the (square) images.")
    channels: list[int] = Field(
        default_factory=lambda: [32, 64],
        min_length=1,
        description="Output channels of each conv block (3x3 conv, ReLU, 2x2 max-pool "
        "while the feature map is at least 2 pixels wide).",
    )
    hidden: int = Field(128, gt=0, description="Width of the hidden fully connected layer.")
    num_classes: int = Field(10, gt=1, description="Number of output classes.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before the classifier.")

    @model_validator(mode="after")
    def _check_channels(self) -> CNNConfig:
        bad = [c for c in self.channels if c <= 0]
        if bad:
            raise ValueError(f"channels must be positive, got {self.channels}")
        return self


class TargetModelConfig(BaseModel):
    """A ``_target_`` node for any ``nn.Module``: ``{_target_: my_pkg.MyNet, hidden: 64}``.

    The keys other than ``_target_`` are the constructor's arguments (checked against its
    signature by validation); ``vocab_size``, when the constructor takes it and the node
    leaves it unset, is filled from the data. The forward's outputs become the step's
    ``preds``: a dict as is, a tensor as ``preds.logits``, a tuple named by the recipe's
    ``model_outputs`` (see :func:`stoker.models.outputs.as_preds`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    target_: str = Field(alias="_target_", description="Import path of the nn.Module class "
                         "or of a function returning one.")

    def node(self) -> dict[str, Any]:
        """The node as a plain ``_target_`` dict (a fresh copy)."""
        import copy

        return {"_target_": self.target_, **copy.deepcopy(self.model_extra or {})}

    @property
    def name(self) -> str:
        """What to call this model in messages: its target's last component."""
        return self.target_.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


ModelConfig = Annotated[
    Union[GPTConfig, RNNConfig, CNNConfig], Field(discriminator="architecture")
]
"""The model section of a recipe: one of the built-in configs, chosen by ``architecture``."""

LM_CONFIGS = (GPTConfig, RNNConfig)
"""Configs of language models (they have a ``vocab_size`` filled from the data)."""


def require_vocab_size(cfg: Any) -> int:
    """A language model cannot be built before its vocabulary size is known."""
    if cfg.vocab_size is None:
        from stoker.errors import UserError

        raise UserError(
            "model.vocab_size is not set: set it in the config or let the trainer fill "
            "it from the prepared dataset's metadata"
        )
    return int(cfg.vocab_size)
