"""Convert a stoker :class:`~stoker.models.gpt.GPT` to and from ``transformers``'
``LlamaForCausalLM`` with the same weights (the ``hf`` extra; imported lazily).

The architectures are the same; names, fusion and one layout detail differ: stoker fuses
q/k/v into ``wqkv`` and gate/up into ``w13`` (split or concatenated here), and rotates
interleaved pairs of each head (Meta's layout) where Hugging Face rotates the two halves,
so query and key rows are permuted within each head, as HF's own Llama converter does.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from stoker.errors import UserError
from stoker.models.config import GPTConfig

if TYPE_CHECKING:
    from stoker.models.gpt import GPT

__all__ = [
    "from_hf",
    "gpt_config_to_llama",
    "gpt_state_to_hf",
    "hf_state_to_gpt",
    "llama_config_to_gpt",
    "to_hf",
]


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise UserError(
            "Hugging Face interop needs transformers; install the extra: "
            "pip install 'stoker[hf]'"
        ) from exc
    return transformers


def gpt_config_to_llama(cfg: GPTConfig) -> Any:
    """The ``LlamaConfig`` describing the same network as ``cfg``."""
    if cfg.vocab_size is None:
        raise UserError("model.vocab_size must be set to export to Hugging Face")
    tf = _transformers()
    kwargs: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim,
        intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_weights,
        attention_bias=cfg.bias,
        mlp_bias=cfg.bias,
        attention_dropout=cfg.dropout,
        hidden_act="silu",
        initializer_range=cfg.init_std,
    )
    hf_cfg = tf.LlamaConfig(**kwargs)
    if _rope_theta(hf_cfg) != cfg.rope_theta:  # newer transformers keep it in rope_parameters
        hf_cfg.rope_parameters = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    return hf_cfg


def _rope_theta(hf_cfg: Any) -> float:
    params = getattr(hf_cfg, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    return float(getattr(hf_cfg, "rope_theta", 10000.0))


def _rope_scaling(hf_cfg: Any) -> Any:
    params = getattr(hf_cfg, "rope_parameters", None)
    if isinstance(params, dict):
        return None if params.get("rope_type", "default") == "default" else params
    return getattr(hf_cfg, "rope_scaling", None)


def llama_config_to_gpt(hf_cfg: Any) -> GPTConfig:
    """The :class:`GPTConfig` of a ``LlamaConfig`` (plain rotary, SiLU, no scaling only)."""
    problems = []
    if getattr(hf_cfg, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={hf_cfg.hidden_act!r} (stoker's GPT uses silu)")
    if _rope_scaling(hf_cfg):
        problems.append(f"rope scaling {_rope_scaling(hf_cfg)!r} (not supported)")
    head_dim = getattr(hf_cfg, "head_dim", None) or hf_cfg.hidden_size // hf_cfg.num_attention_heads
    if head_dim * hf_cfg.num_attention_heads != hf_cfg.hidden_size:
        problems.append(f"head_dim={head_dim} * heads != hidden_size={hf_cfg.hidden_size}")
    if bool(getattr(hf_cfg, "attention_bias", False)) != bool(getattr(hf_cfg, "mlp_bias", False)):
        problems.append("attention_bias and mlp_bias differ (stoker has one `bias` switch)")
    if problems:
        raise UserError("cannot convert this Llama config to a stoker GPT: " + "; ".join(problems))
    return GPTConfig(
        vocab_size=hf_cfg.vocab_size,
        n_layers=hf_cfg.num_hidden_layers,
        dim=hf_cfg.hidden_size,
        n_heads=hf_cfg.num_attention_heads,
        n_kv_heads=getattr(hf_cfg, "num_key_value_heads", None) or hf_cfg.num_attention_heads,
        max_seq_len=hf_cfg.max_position_embeddings,
        ffn_hidden=hf_cfg.intermediate_size,
        norm_eps=hf_cfg.rms_norm_eps,
        rope_theta=_rope_theta(hf_cfg),
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
        tie_weights=bool(getattr(hf_cfg, "tie_word_embeddings", False)),
        bias=bool(getattr(hf_cfg, "attention_bias", False)),
        init_std=float(getattr(hf_cfg, "initializer_range", 0.02)),
    )


def _permute(w: torch.Tensor, n_heads: int, head_dim: int, *, to_hf: bool) -> torch.Tensor:
    """Reorder each head's rows between interleaved pairs and rotate-half halves."""
    rest = w.shape[1:]
    if to_hf:  # (pair index, 2) -> (2, pair index)
        return w.reshape(n_heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(w.shape)
    return w.reshape(n_heads, 2, head_dim // 2, *rest).transpose(1, 2).reshape(w.shape)


def gpt_state_to_hf(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename/split a GPT state dict into ``LlamaForCausalLM`` names."""
    H, K, hd, F = cfg.n_heads, cfg.kv_heads, cfg.head_dim, cfg.hidden_dim
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"],
           "model.norm.weight": sd["norm.weight"]}
    out["lm_head.weight"] = sd.get("lm_head.weight", sd["tok_emb.weight"])
    for i in range(cfg.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        out[q + "input_layernorm.weight"] = sd[p + "attn_norm.weight"]
        out[q + "post_attention_layernorm.weight"] = sd[p + "ffn_norm.weight"]
        suffixes = ("weight", "bias") if cfg.bias else ("weight",)
        for s in suffixes:
            wq, wk, wv = sd[p + f"attn.wqkv.{s}"].split([H * hd, K * hd, K * hd])
            out[q + f"self_attn.q_proj.{s}"] = _permute(wq, H, hd, to_hf=True)
            out[q + f"self_attn.k_proj.{s}"] = _permute(wk, K, hd, to_hf=True)
            out[q + f"self_attn.v_proj.{s}"] = wv
            out[q + f"self_attn.o_proj.{s}"] = sd[p + f"attn.wo.{s}"]
            gate, up = sd[p + f"ffn.w13.{s}"].split([F, F])
            out[q + f"mlp.gate_proj.{s}"] = gate
            out[q + f"mlp.up_proj.{s}"] = up
            out[q + f"mlp.down_proj.{s}"] = sd[p + f"ffn.w2.{s}"]
    return {k: v.clone() for k, v in out.items()}


def hf_state_to_gpt(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename/fuse a ``LlamaForCausalLM`` state dict into GPT names."""
    H, K, hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
    out = {"tok_emb.weight": sd["model.embed_tokens.weight"],
           "norm.weight": sd["model.norm.weight"]}
    out["lm_head.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        out[p + "attn_norm.weight"] = sd[q + "input_layernorm.weight"]
        out[p + "ffn_norm.weight"] = sd[q + "post_attention_layernorm.weight"]
        suffixes = ("weight", "bias") if cfg.bias else ("weight",)
        for s in suffixes:
            out[p + f"attn.wqkv.{s}"] = torch.cat([
                _permute(sd[q + f"self_attn.q_proj.{s}"], H, hd, to_hf=False),
                _permute(sd[q + f"self_attn.k_proj.{s}"], K, hd, to_hf=False),
                sd[q + f"self_attn.v_proj.{s}"],
            ])
            out[p + f"attn.wo.{s}"] = sd[q + f"self_attn.o_proj.{s}"]
            out[p + f"ffn.w13.{s}"] = torch.cat(
                [sd[q + f"mlp.gate_proj.{s}"], sd[q + f"mlp.up_proj.{s}"]]
            )
            out[p + f"ffn.w2.{s}"] = sd[q + f"mlp.down_proj.{s}"]
    return {k: v.clone() for k, v in out.items()}


def to_hf(model: GPT) -> Any:
    """A ``LlamaForCausalLM`` (eval mode) computing the same logits as ``model``."""
    tf = _transformers()
    hf_cfg = gpt_config_to_llama(model.config)
    dtype = model.tok_emb.weight.dtype
    hf = tf.LlamaForCausalLM(hf_cfg).to(dtype)
    missing, unexpected = hf.load_state_dict(gpt_state_to_hf(model.state_dict(), model.config),
                                             strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise UserError(f"weight mapping to Llama failed: missing={missing}, "
                        f"unexpected={unexpected}")
    if hf_cfg.tie_word_embeddings:
        hf.tie_weights()
    return hf.eval()


def from_hf(hf_model: Any) -> GPT:
    """A stoker GPT (eval mode) with the weights of a ``LlamaForCausalLM``."""
    from stoker.models.gpt import GPT

    cfg = llama_config_to_gpt(hf_model.config)
    with torch.no_grad():
        model = GPT(cfg)
    sd = hf_state_to_gpt(hf_model.state_dict(), cfg)
    if cfg.tie_weights:
        sd["lm_head.weight"] = sd["tok_emb.weight"]
    model.load_state_dict(sd)
    return model.to(hf_model.dtype).eval()
