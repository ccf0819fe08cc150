"""Worker for the concurrency tests: publish COUNT tiny artifacts of one name, print versions.

Usage: python _publisher.py REGISTRY_URL ENDPOINT|- NAME COUNT WORKER GO_FILE
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

url, endpoint, name, count, worker, go = sys.argv[1:7]
from stoker import Artifact, Registry  # noqa: E402

opts = {"client_kwargs": {"endpoint_url": endpoint}} if endpoint != "-" else None
reg = Registry(url, storage_options=opts)
tmp = Path(tempfile.mkdtemp())
while not os.path.exists(go):  # start together
    time.sleep(0.005)
versions = []
for i in range(int(count)):
    f = tmp / f"w{worker}-{i}.txt"
    f.write_text(f"worker {worker} item {i}\n")
    art = Artifact(path=f, metadata={"worker": int(worker), "i": i}).save(name, registry=reg)
    versions.append(art.version)
print(json.dumps(versions))
