"""prepare() through the library: formats, layout, metadata, splits, blends."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stoker.data.prepare import parse_split_ratios, prepare
from stoker.data.tokenizers import load_tokenizer
from stoker.errors import DataError


def _tokens(out: Path, split: str) -> np.ndarray:
    md = json.loads((out / "metadata.json").read_text())
    parts = [np.fromfile(out / s["file"], dtype=md["dtype"]) for s in md["splits"][split]["shards"]]
    return np.concatenate(parts) if parts else np.zeros(0, md["dtype"])


def test_char_prepare_layout_and_metadata(tmp_path, corpus_dir):
    out = prepare(str(corpus_dir), tmp_path / "o", type="char", workers=1, shard_size_mb=0.05)
    md = json.loads((out / "metadata.json").read_text())
    assert md["format"] == "stoker.tokens/1" and md["dtype"] == "uint16"
    assert md["stoker_version"] and md["command"]
    assert set(md["splits"]) == {"train", "valid", "test"}
    total = sum(md["splits"][s]["tokens"] for s in md["splits"])
    assert total == md["total_tokens"]
    assert 0.85 < md["splits"]["train"]["tokens"] / total < 0.95
    assert len(md["sources"]) == 40 and all(len(s["sha256"]) == 64 and s["size"] > 0 for s in md["sources"])
    assert not (out / ".stoker-prepare").exists()
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pickle"))
    # the tokens decode back to the corpus text
    tok = load_tokenizer(out)
    all_text = "".join(f.read_text() for f in sorted(corpus_dir.rglob("*.txt")))
    train = _tokens(out, "train")
    assert tok.decode(train[:2000].tolist()) == all_text[: len(tok.decode(train[:2000].tolist()))]
    # document index: int64 starts, first is 0
    idx = np.fromfile(out / md["splits"]["train"]["shards"][0]["index"], dtype="<i8")
    assert idx[0] == 0 and (np.diff(idx) > 0).all()
    n_eos = sum(int((_tokens(out, s) == tok.eos_id).sum()) for s in md["splits"])
    assert n_eos == 40  # one end-of-document token per file


def test_subword_jsonl_parquet_and_hf_dataset_dir(tmp_path, jsonl_file, bpe_tokenizer_dir):
    rows = [json.loads(line)["text"] for line in jsonl_file.read_text().splitlines()]
    a = prepare(str(jsonl_file), tmp_path / "a", type="subword", tokenizer_path=bpe_tokenizer_dir,
                workers=1, split_ratios="1.0")
    md = json.loads((a / "metadata.json").read_text())
    assert md["documents"] == len(rows) and list(md["splits"]) == ["train"]
    assert md["tokenizer"]["type"] == "bpe"

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": rows}), tmp_path / "x.parquet", row_group_size=7)
    b = prepare(str(tmp_path / "x.parquet"), tmp_path / "b", type="subword",
                tokenizer_path=bpe_tokenizer_dir, text_field="body", workers=1, split_ratios="1.0")
    import datasets

    datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(tmp_path / "hfds"))
    c = prepare(str(tmp_path / "hfds"), tmp_path / "c", type="subword",
                tokenizer_path=bpe_tokenizer_dir, workers=1, split_ratios="1.0")
    ta, tb, tc = (_tokens(d, "train") for d in (a, b, c))
    assert np.array_equal(ta, tb) and np.array_equal(ta, tc)


def test_globs_and_multiple_inputs(tmp_path, corpus_dir):
    out = prepare([str(corpus_dir / "part0" / "*.txt"), str(corpus_dir / "part1")], tmp_path / "g",
                  workers=1)
    md = json.loads((out / "metadata.json").read_text())
    n0 = len(list((corpus_dir / "part0").glob("*.txt")))
    n1 = len(list((corpus_dir / "part1").glob("*.txt")))
    assert len(md["sources"]) == n0 + n1


def test_skip_bad_lines_counts(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "hello"}\nnot json\n{"other": 1}\n{"text": "world"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        prepare(str(p), tmp_path / "o1", workers=1)
    assert not (tmp_path / "o1").exists()
    out = prepare(str(p), tmp_path / "o2", workers=1, skip_bad_lines=True, split_ratios="1")
    md = json.loads((out / "metadata.json").read_text())
    assert md["bad_lines_skipped"] == 2 and md["documents"] == 2


def test_split_ratio_validation():
    assert parse_split_ratios("0.9,0.05,0.05") == (0.9, 0.05, 0.05)
    for bad in ("0.9,0.2", "1.2,-0.2", "a,b", "0.5,0.2,0.2,0.1", "0,1"):
        with pytest.raises(DataError):
            parse_split_ratios(bad)


def test_dtype_uint32_and_too_small(tmp_path, corpus_dir):
    from stoker.data.tokenizers import CharTokenizer

    big = CharTokenizer([chr(c) for c in range(0x10000, 0x10000 + 66000)]
                        + list("abcdefghijklmnopqrstuvwxyz _.\n"))
    assert big.vocab_size > 65536
    with pytest.raises(DataError, match="more than uint16"):
        prepare(str(corpus_dir / "part0"), tmp_path / "u", tokenizer=big, dtype="uint16")
    assert not (tmp_path / "u").exists()
    out = prepare(str(corpus_dir / "part0"), tmp_path / "u32", tokenizer=big, workers=1)
    assert json.loads((out / "metadata.json").read_text())["dtype"] == "uint32"


def test_blend_file_shares(tmp_path):
    from stoker.data.blend import read_blend_file

    (tmp_path / "a.txt").write_text(("a" * 99 + "\n") * 1000)
    (tmp_path / "b.txt").write_text(("b" * 99 + "\n") * 100)
    (tmp_path / "blend.yaml").write_text("sources:\n  - {path: a.txt, weight: 0.5}\n"
                                         "  - {path: b.txt, weight: 0.5}\n")
    specs = read_blend_file(tmp_path / "blend.yaml")
    out = prepare(specs, tmp_path / "o", workers=1, split_ratios="1", shard_size_mb=0.001)
    tok = load_tokenizer(out)
    t = _tokens(out, "train")
    na, nb = int((t == tok.encode("a")[0]).sum()), int((t == tok.encode("b")[0]).sum())
    assert 0.8 < na / nb < 1.25  # equal shares although a.txt is 10x larger


def test_scan_counts_lines_only_when_cutting_and_still_right_when_file_grew(tmp_path):
    from stoker.data.sources import Source, scan_source

    p = tmp_path / "big.txt"
    p.write_text("".join(f"line {i}\n" for i in range(5000)))
    exact = Source(str(p), "text", p.stat().st_size)
    scan_source(exact, 4096, count_lines=True)
    stale = Source(str(p), "text", 10)  # listed when it was tiny: no line counting planned
    scan_source(stale, 4096)
    assert stale.cuts == exact.cuts and len(exact.cuts) > 5
    assert stale.sha256 == exact.sha256
    assert exact.cuts[1][2] == 1 + p.read_bytes()[: exact.cuts[1][0]].count(b"\n")


def test_resume_redoes_corrupted_shards_and_old_markers(tmp_path, corpus_dir):
    """A shard whose bytes no longer match its marker's CRC-32, or a marker written by an
    older stoker (SHA-256 per shard, no CRC-32), is redone on resume, never trusted."""
    from stoker.errors import Interrupted

    def stop_after(n):
        def cb(p):
            if p.phase == "tokenize" and p.done_units >= n:
                raise KeyboardInterrupt

        return cb

    out, ref = tmp_path / "out", tmp_path / "ref"
    kw = {"type": "char", "workers": 1, "shard_size_mb": 0.002}
    with pytest.raises(Interrupted):
        prepare(corpus_dir, out, progress=stop_after(4), **kw)
    work = out / ".stoker-prepare"
    markers = sorted(work.glob("unit-*.json"))
    assert len(markers) >= 4 and not (out / "metadata.json").exists()
    bad = json.loads(markers[0].read_text())
    shard = out / next(iter(bad["shards"].values()))["file"]
    raw = bytearray(shard.read_bytes())
    raw[0] ^= 0xFF  # same size, different bytes
    shard.write_bytes(bytes(raw))
    old = json.loads(markers[1].read_text())
    for s in old["shards"].values():
        s["sha256"] = "0" * 64
        del s["crc32"]
    markers[1].write_text(json.dumps(old))

    seen = []
    prepare(corpus_dir, out, progress=seen.append, **kw)
    resumed = max(p.resumed_units for p in seen)
    assert resumed == len(markers) - 2
    prepare(corpus_dir, ref, **kw)
    for split in ("train", "valid", "test"):
        assert np.array_equal(_tokens(out, split), _tokens(ref, split))
    md = json.loads((out / "metadata.json").read_text())
    assert all(len(s["crc32"]) == 8 for s in md["splits"]["train"]["shards"])
