"""Fixtures for artifact and tracking tests: a real S3 (moto server on loopback) and small data."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def moto_endpoint():
    """A real S3-compatible HTTP server on 127.0.0.1 (moto), for s3fs. One per test: its
    request log writes to the stderr that pytest captured for the test that started it."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    import logging
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for k, v in S3_ENV.items():
        os.environ.setdefault(k, v)
    # moto's own ThreadedMotoServer handles requests in parallel threads, and its PutObject
    # checks If-None-Match: * and stores the key as two separate steps with no lock: under
    # load two concurrent conditional PUTs of one key both get 200 (real S3 makes it atomic).
    # Shown without stoker: 8 boto3 clients racing If-None-Match PUTs got 13 of 300 keys
    # granted twice (and some 500s from moto's buffers closed under it); 0 with this lock.
    # So requests are handled one at a time (connections are still threaded), which makes
    # moto's conditional writes atomic as S3's are; the tests still race real publishers.
    app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def serialised(environ, start_response):
        with one_at_a_time:
            return list(app(environ, start_response))

    port = _free_port()
    server = make_server("127.0.0.1", port, serialised, threaded=True,
                         request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def s3_registry_url(moto_endpoint, request):
    """A fresh bucket per test; returns (url, storage_options)."""
    import uuid

    import s3fs

    opts = {"client_kwargs": {"endpoint_url": moto_endpoint}}
    fs = s3fs.S3FileSystem(**opts)
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return f"s3://{bucket}/registry", opts


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "train").mkdir(parents=True)
    (d / "train" / "shard-0.bin").write_bytes(b"\x01\x02" * 100)
    (d / "valid").mkdir()
    (d / "valid" / "shard-0.bin").write_bytes(b"\x03" * 50)
    (d / "blend.json").write_text('{"weights": [1.0]}')
    return d


@pytest.fixture(autouse=True)
def _fresh_process_defaults():
    """No test depends on another's stoker.init() or lineage tracker."""
    from stoker.artifacts import registry
    from stoker.track import lineage, run

    registry.reset()
    lineage.set_lineage_tracker(None)
    run.reset_session()
    yield
    registry.reset()
    lineage.set_lineage_tracker(None)
