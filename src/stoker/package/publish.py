"""Publishing an archive: a :class:`ModelArtifact` whose directory holds ``model.stoker``.

Choice: the trainer keeps publishing its checkpoint as the run's ``ModelArtifact``; an
archive is made from that (``stoker pack --checkpoint art://NAME``) and, with
``--publish``, becomes the next version of a model artifact itself. So an ``art://`` URI
always names exactly one thing, a checkpoint or an archive, and every command that takes
a model opens both (:func:`stoker.package.source.open_model`). The archive version records
the artifact it was packed from as its input, so lineage runs archive -> checkpoint -> data.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from stoker.package.archive import ArchiveReader
from stoker.package.source import ARCHIVE_IN_ARTIFACT

__all__ = ["publish_archive"]


def publish_archive(archive: str | os.PathLike[str], name: str, *, registry: Any = None,
                    aliases: tuple[str, ...] = ()) -> Any:
    """Publish ``archive`` as a new version of model artifact ``name``; return it."""
    from stoker.artifacts.types import ModelArtifact
    from stoker.track.run import tracking_info

    with ArchiveReader(archive) as reader:
        lineage = reader.read_json("lineage.json") if "lineage.json" in reader.entries else {}
        config = reader.read_json("config.json")
    source = lineage.get("source") or {}
    used = [u for u in (source.get("artifact"), (lineage.get("data") or {}).get("artifact"))
            if isinstance(u, str) and u.startswith("art://")]
    producer = tracking_info(command=(lineage.get("run") or {}).get("command"),
                             recipe=(lineage.get("run") or {}).get("name"))
    producer = producer.model_copy(update={"used_artifacts": used})
    metrics = {k: float(v) for k, v in (source.get("metrics") or {}).items()
               if isinstance(v, (int, float))}
    with tempfile.TemporaryDirectory(prefix=".stoker-publish-", dir=Path(archive).parent) as tmp:
        stage = Path(tmp)
        try:
            os.link(archive, stage / ARCHIVE_IN_ARTIFACT)
        except OSError:
            shutil.copy2(archive, stage / ARCHIVE_IN_ARTIFACT)
        art = ModelArtifact(
            path=stage, step=source.get("step"), loss=metrics.get("loss"), metrics=metrics,
            architecture=(config.get("model") or {}).get("architecture"),
            metadata={"archive": ARCHIVE_IN_ARTIFACT, "packed_from": source.get("spec")},
            producer=producer,
        )
        return art.save(name, registry=registry, mode="copy", aliases=aliases)
