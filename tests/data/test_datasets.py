"""TokenWindowDataset, ResumableSampler, DataBlend and PackedSFTDataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from stoker.data.blend import DataBlend
from stoker.data.datasets import TokenWindowDataset
from stoker.data.prepare import prepare
from stoker.data.sampler import ResumableSampler
from stoker.data.sft import PackedSFTDataset
from stoker.data.tokenizers import CharTokenizer
from stoker.errors import DataError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, corpus_dir):
    # many small shards so windows cross shard boundaries
    return prepare(str(corpus_dir), tmp_path_factory.mktemp("ds") / "o", workers=1, shard_size_mb=0.02)


def _stream(path, split):
    md = json.loads((path / "metadata.json").read_text())
    return np.concatenate([np.fromfile(path / s["file"], dtype=md["dtype"])
                           for s in md["splits"][split]["shards"]]).astype(np.int64)


def test_windows_match_token_stream(prepared):
    ds = TokenWindowDataset(prepared, split="train", seq_len=50)
    stream = _stream(prepared, "train")
    assert len(ds) == (len(stream) - 51) // 50 + 1
    assert ds.vocab_size == json.loads((prepared / "metadata.json").read_text())["vocab_size"]
    for i in (0, 1, 17, len(ds) // 2, len(ds) - 1):
        item = ds[i]
        assert item["input_ids"].dtype == torch.long and item["input_ids"].shape == (50,)
        assert torch.equal(item["input_ids"], torch.from_numpy(stream[i * 50:i * 50 + 50]))
        assert torch.equal(item["labels"], torch.from_numpy(stream[i * 50 + 1:i * 50 + 51]))
    idx = list(range(len(ds)))[::7]
    batch = ds.get_batch(idx)
    for row, i in enumerate(idx):
        assert torch.equal(batch["input_ids"][row], ds[i]["input_ids"])
        assert torch.equal(batch["labels"][row], ds[i]["labels"])
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert TokenWindowDataset(prepared, split="val", seq_len=8).split == "valid"


def test_too_short_split_and_missing_dataset(prepared, tmp_path):
    with pytest.raises(DataError, match="fewer than seq_len"):
        TokenWindowDataset(prepared, split="test", seq_len=10_000_000)
    with pytest.raises(DataError, match="does not exist"):
        TokenWindowDataset(tmp_path / "nope")


def test_dataloader_workers_and_batched_fetch(prepared):
    ds = TokenWindowDataset(prepared, seq_len=32)
    sampler = ResumableSampler(len(ds), seed=3)
    loader = DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2)
    first = next(iter(loader))
    expect = ds.get_batch(list(ResumableSampler(len(ds), seed=3).indices(0)[:8]))
    assert torch.equal(first["input_ids"], expect["input_ids"])


def test_sampler_deterministic_resumable_and_disjoint():
    s = ResumableSampler(103, seed=7)
    order = list(s)
    assert sorted(order) == list(range(103)) and order == list(ResumableSampler(103, seed=7))
    assert list(ResumableSampler(103, seed=8).indices(0)) != order
    # resume mid-epoch: a new sampler loaded from the state yields exactly the rest
    a = ResumableSampler(103, seed=7)
    it = iter(a)
    seen = [next(it) for _ in range(40)]
    state = a.state_dict()
    b = ResumableSampler(103, seed=7)
    b.load_state_dict(state)
    b.set_epoch(0)  # a trainer calling set_epoch must not lose the position
    assert seen + list(b) == order
    assert b.epoch == 1 and list(b.indices(1)) != order
    # ranks see disjoint parts that together cover the data (drop_last)
    parts = [list(ResumableSampler(103, seed=7, rank=r, world_size=4)) for r in range(4)]
    assert all(len(p) == 25 for p in parts)
    flat = [i for p in parts for i in p]
    assert len(set(flat)) == 100
    with pytest.raises(DataError, match="dataset or data settings changed"):
        ResumableSampler(99, seed=7).load_state_dict(state)


def test_blend_weights_deterministic():
    a, b = list(range(1000)), list(range(1000, 1300))
    blend = DataBlend([a, b], [0.75, 0.25], num_samples=400)
    assert blend.counts() == [300, 100]
    assert [blend[i] for i in range(400)] == [DataBlend([a, b], [3, 1], num_samples=400)[i] for i in range(400)]
    # any prefix is close to the weights
    first = [blend[i] >= 1000 for i in range(40)]
    assert sum(first) == 10
    with pytest.raises(DataError):
        DataBlend([a], [0.5, 0.5])


def test_packed_sft_masks_prompts(tmp_path):
    p = tmp_path / "sft.jsonl"
    rows = [{"prompt": "Q: 2+2?\nA:", "response": " 4"}, {"prompt": "Q: hi\nA:", "response": " hello"},
            {"prompt": "Q: x\nA:", "response": " y"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tok = CharTokenizer.from_texts([r["prompt"] + r["response"] for r in rows])
    ds = PackedSFTDataset(p, tok, pack_size=32)
    assert ds.num_examples == 3 and len(ds) == 2  # 12+10 tokens fit one pack, 9 the next
    item = ds[0]
    assert item["input_ids"].shape == (32,) and item["labels"].shape == (32,)
    targets = [int(t) for t in item["labels"] if t != -100]
    assert tok.decode(targets) == " 4 hello"  # only responses (and eos) are learned
    assert targets.count(tok.eos_id) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing text field"):
        PackedSFTDataset(bad, tok, pack_size=16)
