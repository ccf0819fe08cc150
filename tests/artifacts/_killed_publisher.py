"""Worker for the kill test: publish a directory whose last file is a FIFO nobody writes,
so the publisher blocks mid-copy until the test kills it with SIGKILL."""
import sys

from stoker import Artifact, Registry

url, endpoint, name, src = sys.argv[1:5]
opts = {"client_kwargs": {"endpoint_url": endpoint}} if endpoint != "-" else None
Artifact(path=src).save(name, registry=Registry(url, storage_options=opts))
