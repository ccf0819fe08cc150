"""Hugging Face Llama interop: same weights give the same logits, both directions."""
from __future__ import annotations

import pytest
import torch

from stoker.models import GPTConfig, build_model

transformers = pytest.importorskip("transformers")

from stoker.models.hf import from_hf, gpt_config_to_llama, llama_config_to_gpt, to_hf  # noqa: E402


@pytest.mark.parametrize("tie, n_kv, bias", [(True, None, False), (False, 2, True)])
def test_to_hf_logits_match(tie, n_kv, bias):
    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=64, n_layers=2, dim=32, n_heads=4, n_kv_heads=n_kv,
                                  max_seq_len=32, tie_weights=tie, rope_theta=500.0,
                                  bias=bias)).eval()
    if bias:  # zero-initialised biases would not test the mapping
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith(".bias"):
                    p.normal_(0.0, 0.1)
    hf = to_hf(model)
    x = torch.randint(0, 64, (2, 17))
    with torch.no_grad():
        ours = model(x)["logits"]
        theirs = hf(x).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # and back again: the same weights
    back = from_hf(hf)
    for (name, p), (_, q) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(p, q), name


def test_from_hf_logits_match_and_config_round_trip():
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=48, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=6,
                                   num_key_value_heads=3, max_position_embeddings=40,
                                   tie_word_embeddings=False)
    torch.manual_seed(1)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    model = from_hf(hf)
    assert model.config.n_kv_heads == 3 and model.config.ffn_hidden == 96
    x = torch.randint(0, 50, (1, 30))
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"], hf(x).logits, rtol=1e-4, atol=1e-5)
    back = llama_config_to_gpt(gpt_config_to_llama(model.config))
    assert back == model.config


def test_gradients_match_the_hf_llama():
    """The hand-written backward passes (RMSNorm, SwiGLU, in-place rotary, fused residual)
    give the same gradients as transformers' plain-autograd Llama."""
    from stoker.models.hf import gpt_state_to_hf

    torch.manual_seed(0)
    model = build_model(GPTConfig(vocab_size=40, n_layers=2, dim=32, n_heads=4, n_kv_heads=2,
                                  max_seq_len=16, tie_weights=False))
    with torch.no_grad():  # non-trivial norm weights
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    hf = to_hf(model).train()
    x = torch.randint(0, 40, (2, 12))
    target = torch.randn(2, 12, 40)
    (model(x)["logits"] * target).sum().backward()
    (hf(x).logits * target).sum().backward()
    ours = gpt_state_to_hf({n: p.grad for n, p in model.named_parameters()}, model.config)
    theirs = {n: p.grad for n, p in hf.named_parameters()}
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5, msg=name)
