"""Random window reads from a prepared dataset: stoker TokenWindowDataset vs raw numpy memmap.

    python benchmarks/bench_data_dataset.py [--seq-len 256] [--batch 64] [--quick]

Uses the built-in corpus (BPE, prepared once under $STOKER_HOME or benchmarks/_work).
``--quick``: a ~200 KB char dataset prepared in a temp dir, 0.2 s per figure.
Goal: >= 5M tokens/s from one process, so data never stalls training.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


def tiny_dataset(root: Path) -> Path:
    """A char dataset of the first ~200 KB of the built-in corpus (for ``--quick``)."""
    from stoker.data.corpus import default_corpus_files
    from stoker.data.prepare import prepare

    text, size = [], 0
    for f in default_corpus_files():
        text.append(f.read_text("utf-8"))
        size += len(text[-1])
        if size > 200_000:
            break
    (root / "corpus.txt").write_text("\n".join(text), encoding="utf-8")
    return prepare([str(root / "corpus.txt")], root / "char", type="char",
                   split_ratios=(0.9, 0.1, 0.0), workers=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    _quick.add(ap)
    a = ap.parse_args()
    os.environ.setdefault("STOKER_HOME", str(Path(__file__).resolve().parent / "_work" / "home"))
    from stoker.data.corpus import ensure_default_dataset
    from stoker.data.datasets import TokenWindowDataset

    tmp = tempfile.TemporaryDirectory()
    if a.quick:
        a.seconds = 0.2
        path = tiny_dataset(Path(tmp.name))
    else:
        path = ensure_default_dataset("bpe")
    ds = TokenWindowDataset(path, seq_len=a.seq_len)
    rng = np.random.default_rng(0)
    print(f"dataset: {ds.num_tokens:,} train tokens, {len(ds):,} windows of {a.seq_len}")

    def timed(fn, per_call_tokens):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            fn()
            n += 1
        return n * per_call_tokens / (time.perf_counter() - t0)

    # raw baseline: numpy memmap of one big shard + torch conversion, the least one could do
    import torch

    print(_quick.machine(a.quick))
    m = np.memmap(path / ds.metadata["splits"]["train"]["shards"][0]["file"], dtype=ds.dtype, mode="r")
    nwin = (len(m) - a.seq_len - 1) // a.seq_len

    def raw_one():
        s = int(rng.integers(nwin)) * a.seq_len
        w = torch.from_numpy(m[s:s + a.seq_len + 1].astype(np.int64))
        return w[:-1], w[1:]

    def one():
        ds[int(rng.integers(len(ds)))]

    def batch():
        ds.get_batch(rng.integers(len(ds), size=a.batch))

    def dl_items():
        ds.__getitems__(rng.integers(len(ds), size=a.batch).tolist())

    raw = timed(raw_one, a.seq_len)
    single = timed(one, a.seq_len)
    batched = timed(batch, a.seq_len * a.batch)
    items = timed(dl_items, a.seq_len * a.batch)
    print(f"raw numpy memmap slice + torch, 1 window/call: {raw / 1e6:6.2f} M tokens/s")
    print(f"stoker ds[i], 1 window/call:                  {single / 1e6:6.2f} M tokens/s  "
          f"(ratio {single / raw:.2f}x raw)")
    print(f"stoker get_batch({a.batch}) (one gather/shard):      {batched / 1e6:6.2f} M tokens/s")
    print(f"stoker __getitems__({a.batch}) (DataLoader path):    {items / 1e6:6.2f} M tokens/s "
          "(goal >= 5M)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
