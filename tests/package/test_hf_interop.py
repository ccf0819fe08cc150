"""Hugging Face interop through the real CLI: `stoker export hf` loads in transformers with
stoker unimportable (same logits, same greedy tokens, same tokenizer ids); `stoker import
hf` turns a local random Llama into an archive that matches it; unsupported ones refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import run_cli

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.integration

_NO_STOKER = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "stoker" or name.startswith("stoker."):
            raise ImportError("stoker is blocked in this test")
sys.meta_path.insert(0, Block())
import torch, transformers
d, prompt = sys.argv[1], sys.argv[2]
model = transformers.AutoModelForCausalLM.from_pretrained(d).eval()
tok = transformers.AutoTokenizer.from_pretrained(d)
ids = tok(prompt, add_special_tokens=False)["input_ids"]
x = torch.tensor([ids])
with torch.no_grad():
    logits = model(x).logits
    gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=12,
                         do_sample=False, eos_token_id=None)
print(json.dumps({"ids": ids, "logits": logits[0].tolist(), "gen": gen[0].tolist(),
                  "decoded": tok.decode(ids), "fast": isinstance(tok, transformers.PreTrainedTokenizerFast),
                  "stoker_loaded": any(m.split(".")[0] == "stoker" for m in sys.modules)}))
"""


def test_export_hf_loads_without_stoker_with_equal_logits_and_tokens(
        stoker_cmd, gpt_run: Path, tmp_path: Path) -> None:
    from stoker.infer.generate import generate
    from stoker.package import open_model

    out = tmp_path / "hf"
    run_cli(stoker_cmd, "export", "hf", "--checkpoint", str(gpt_run), "--output", str(out),
            check=True)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(out.glob("*.bin"))
    prompt = "def alpha(n):\n    return n"
    proc = subprocess.run([sys.executable, "-I", "-c", _NO_STOKER, str(out), prompt],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not got["stoker_loaded"] and got["fast"]
    ours = open_model(str(gpt_run))
    ids = ours.tokenizer.encode(prompt)
    assert got["ids"] == ids and got["decoded"] == prompt
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = ours.model(x)["logits"][0]
    assert torch.allclose(torch.tensor(got["logits"]), logits, atol=1e-5, rtol=0)
    assert got["gen"] == generate(ours.model, x, 12, temperature=0)[0].tolist()


def test_export_refuses_a_non_gpt_model(stoker_cmd, rnn_run: Path, tmp_path: Path) -> None:
    r = run_cli(stoker_cmd, "export", "hf", "--checkpoint", str(rnn_run), "--output",
                str(tmp_path / "hf"))
    assert r.returncode == 2 and "supports: gpt" in r.stderr
    assert not (tmp_path / "hf").exists() and not list(tmp_path.glob(".hf.*"))


def _tiny_llama(d: Path, **kw) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world, the quick brown fox jumps"] * 50, trainer)
    cfg = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32,
                                   intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=64, **kw)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>",
                                                unk_token="<unk>")
    fast.save_pretrained(d)
    return model


@pytest.mark.parametrize("tie", [False, True])
def test_import_hf_matches_transformers(stoker_cmd, tmp_path: Path, tie: bool) -> None:
    from stoker.infer.generate import generate
    from stoker.package import restore

    hf_dir = tmp_path / "llama"
    hf = _tiny_llama(hf_dir, tie_word_embeddings=tie)
    out = tmp_path / "llama.stoker"
    run_cli(stoker_cmd, "import", "hf", str(hf_dir), "--output", str(out), check=True)
    r = restore(out)
    ids = r.tokenizer.encode("hello world")
    x = torch.tensor([ids])
    with torch.no_grad():
        ref = hf(x).logits
        assert torch.allclose(r.model(x)["logits"], ref, atol=1e-5, rtol=0)
        want = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=10,
                           do_sample=False, eos_token_id=None)
    assert torch.equal(generate(r.model, x, 10, temperature=0), want)
    g = run_cli(stoker_cmd, "generate", "text", "--checkpoint", str(out), "-p", "hello",
                "-n", "5", "-t", "0", check=True)
    assert g.stdout.startswith("hello")


def test_import_refuses_unsupported_and_pickled_models(stoker_cmd, tmp_path: Path) -> None:
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                               "architectures": ["GPT2LMHeadModel"]}))
    r = run_cli(stoker_cmd, "import", "hf", str(d), "--output", str(tmp_path / "o.stoker"))
    assert r.returncode == 2 and "'gpt2'" in r.stderr and "supports: llama" in r.stderr
    p = tmp_path / "pickled"
    _tiny_llama(p)
    (p / "model.safetensors").unlink()
    (p / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    r = run_cli(stoker_cmd, "import", "hf", str(p), "--output", str(tmp_path / "o.stoker"))
    assert r.returncode == 2 and "pickle" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.stoker").exists()
