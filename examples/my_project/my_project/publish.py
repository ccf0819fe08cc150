"""Publish ``data/`` as a versioned artifact, so trained models link back to it.

    python -m my_project.publish            # art://penguins-csv:v1 (a no-op change: v2, ...)
    stoker train conf/config.yaml 'data.path=${art:penguins-csv,path}/penguins.csv'

A config value read through ``${art:NAME,path}`` is recorded as an input of the run, so
the model artifact the run publishes shows the table in ``stoker artifacts lineage``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from stoker import Artifact


class TableArtifact(Artifact):
    """A directory of CSV tables; ``rows`` counts the data rows of each."""

    rows: dict[str, int] = {}


def publish(data_dir: str = "data", name: str = "penguins-csv") -> str:
    root = Path(data_dir)
    rows = {}
    for f in sorted(root.glob("*.csv")):
        with open(f, newline="", encoding="utf-8") as fh:
            rows[f.name] = sum(1 for _ in csv.reader(fh)) - 1
    return str(TableArtifact(path=root, rows=rows).save(name=name).uri)


if __name__ == "__main__":
    print(publish())
