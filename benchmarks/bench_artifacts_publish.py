"""Publish throughput of small artifacts (one 1 KiB file), local and S3 (moto on loopback).

Baseline in the same run: writing the same file with plain fsspec (``fs.pipe_file``), the
least any registry has to do. stoker also writes a manifest, claims the version with an
exclusive create (O_EXCL link / conditional PUT) and moves the ``latest`` hint.

Run: .venv/bin/python benchmarks/bench_artifacts_publish.py [N] [--quick]
(``--quick``: N = 10; moto-S3 still runs when moto is installed.)
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stoker import Artifact, Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _quick  # noqa: E402


def bench(url: str, opts: dict | None, src: Path, n: int) -> tuple[float, float]:
    import fsspec

    reg = Registry(url, storage_options=opts)
    Artifact(path=src).save("warm", registry=reg)
    t = time.perf_counter()
    for _ in range(n):
        Artifact(path=src).save("small", registry=reg)
    stoker_rate = n / (time.perf_counter() - t)
    fs, root = fsspec.core.url_to_fs(url, **(opts or {}))
    data = src.read_bytes()
    fs.makedirs(f"{root}/raw", exist_ok=True)
    t = time.perf_counter()
    for i in range(n):
        fs.pipe_file(f"{root}/raw/{i}.bin", data)
    raw_rate = n / (time.perf_counter() - t)
    return stoker_rate, raw_rate


def main() -> None:
    quick = _quick.take()
    print(_quick.machine(quick))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10 if quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "small.bin"
        src.write_bytes(os.urandom(1024))
        rows = [("local", *bench(str(Path(tmp) / "reg"), None, src, n))]
        try:
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(k, "testing")
            os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            opts = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
            import s3fs

            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            s3fs.S3FileSystem(**opts).mkdir(bucket)
            rows.append(("moto-S3", *bench(f"s3://{bucket}/reg", opts, src,
                                           max(n // 4, 5 if quick else 20))))
            server.stop()
        except ImportError as e:
            _quick.skipped("moto-S3", e)
        print(f"{'backend':>8} {'stoker publishes/s':>19} {'raw fsspec writes/s':>20} {'ratio':>7}")
        for name, ours, raw in rows:
            print(f"{name:>8} {ours:>19.1f} {raw:>20.1f} {raw / ours:>6.1f}x")
        print("ratio raw fsspec writes/s / stoker publishes/s: "
              + ", ".join(f"{name} {raw / ours:.1f}x" for name, ours, raw in rows))


if __name__ == "__main__":
    main()
