"""stoker.package: self-contained model archives and Hugging Face import/export.

- :func:`pack` / :func:`restore`: a trained model as one ``.stoker`` file (config, weights as
  safetensors, tokenizer, lineage, SHA-256 manifest) and back, without running code from
  the archive;
- :func:`open_model`: one entry for ``generate`` and ``eval``: an archive, a run directory,
  a checkpoint step directory or an ``art://`` model;
- :func:`init_weights`: what ``init_from=`` fine-tunes from (archive, run, ``art://``, ``hf:``);
- :func:`export_hf` / :func:`import_hf`: a directory ``transformers`` loads on its own, and
  a local Llama directory turned into an archive.

Names load lazily: importing the package pulls in neither torch nor transformers.
"""
from __future__ import annotations

from stoker._lazy import lazy_getattr

_LAZY = {
    "pack": "stoker.package.packing",
    "write_archive": "stoker.package.packing",
    "restore": "stoker.package.restoring",
    "load_weights": "stoker.package.restoring",
    "Restored": "stoker.package.restoring",
    "open_model": "stoker.package.source",
    "export_hf": "stoker.package.hf_export",
    "import_hf": "stoker.package.hf_import",
    "init_weights": "stoker.package.init_weights",
    "ArchiveReader": "stoker.package.archive",
    "is_archive": "stoker.package.archive",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
