"""Weighted blends: of prepared datasets at training time, and of sources in ``prepare``.

:class:`DataBlend` interleaves several map-style datasets so that, over any prefix, each
contributes close to its weight (deterministic: dataset ``d``'s ``k``-th sample is placed at
time ``(k + 0.5) / w_d`` and all times are merged; no RNG, so every rank and every resumed
run agrees). Shuffling is the sampler's job.

A blend file for ``stoker data prepare --blend`` (JSON or YAML) lists sources and weights;
weights are shares of the output (by input bytes), so ``a: 0.7, b: 0.3`` gives about 70% /
30% of the prepared tokens whatever the sources' sizes (small ones are repeated, big ones
sub-sampled by document, deterministically)::

    sources:
      - {path: data/web/, weight: 0.7}
      - {path: data/code.jsonl, weight: 0.3, text_field: content}

A Megatron-style flat list ``[0.7, "data/web/", 0.3, "data/code.jsonl"]`` works too.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stoker.data.sources import InputSpec
from stoker.errors import DataError


class DataBlend:
    """Map-style blend of ``datasets`` with ``weights`` (normalised), ``num_samples`` long."""

    def __init__(self, datasets: Sequence[Any], weights: Sequence[float], *,
                 num_samples: int | None = None):
        import numpy as np

        if len(datasets) == 0 or len(datasets) != len(weights):
            raise DataError(f"DataBlend needs one weight per dataset (got {len(datasets)} datasets "
                            f"and {len(weights)} weights)")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise DataError(f"DataBlend weights must be non-negative and not all zero: {list(weights)}")
        self.datasets = list(datasets)
        self.weights = (w / w.sum()).tolist()
        sizes = [len(d) for d in self.datasets]
        for d, n in enumerate(sizes):
            if n == 0 and self.weights[d] > 0:
                raise DataError(f"DataBlend: dataset {d} is empty but has weight {self.weights[d]}")
        self.num_samples = int(num_samples if num_samples is not None else sum(sizes))
        ids, ks = [], []
        for d, wd in enumerate(self.weights):
            if wd <= 0:
                continue
            count = int(np.ceil(self.num_samples * wd)) + 1
            k = np.arange(count, dtype=np.int64)
            ids.append(np.full(count, d, dtype=np.int64))
            ks.append(k)
        times = np.concatenate([(k + 0.5) / self.weights[int(i[0])] for i, k in zip(ids, ks)])
        all_ids, all_ks = np.concatenate(ids), np.concatenate(ks)
        order = np.lexsort((all_ids, times))[: self.num_samples]
        self.dataset_index = all_ids[order]
        self.sample_index = all_ks[order] % np.asarray(sizes, dtype=np.int64)[self.dataset_index]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> Any:
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"blend index {i} out of range for {self.num_samples}")
        return self.datasets[int(self.dataset_index[i])][int(self.sample_index[i])]

    def counts(self) -> list[int]:
        import numpy as np

        return np.bincount(self.dataset_index, minlength=len(self.datasets)).tolist()


def read_blend_file(path: str | Path, *, text_field: str = "text") -> list[InputSpec]:
    """Read a JSON/YAML blend file into input specs (paths relative to the file)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text("utf-8")
    except OSError as e:
        raise DataError(f"cannot read blend file {p}: {e.strerror}") from e
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            import json

            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
        raise DataError(f"{p}: not valid {'YAML' if p.suffix in ('.yaml', '.yml') else 'JSON'} ({e})") from e
    if isinstance(data, dict):
        data = data.get("sources", data.get("blend"))
    entries: list[dict[str, Any]] = []
    if isinstance(data, list) and data and not isinstance(data[0], dict):
        if len(data) % 2:
            raise DataError(f"{p}: a flat blend list needs weight, path pairs")
        entries = [{"weight": data[i], "path": data[i + 1]} for i in range(0, len(data), 2)]
    elif isinstance(data, list):
        entries = data
    if not entries:
        raise DataError(f"{p}: expected a list of sources, e.g. sources: [{{path: a.txt, weight: 0.5}}]")
    specs = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or "path" not in e:
            raise DataError(f"{p}: source {k} needs a 'path'")
        unknown = set(e) - {"path", "weight", "text_field", "name"}
        if unknown:
            raise DataError(f"{p}: source {k}: unknown key(s) {', '.join(sorted(unknown))} "
                            "(allowed: path, weight, text_field, name)")
        try:
            w = float(e.get("weight", 1.0))
        except (TypeError, ValueError) as err:
            raise DataError(f"{p}: source {k}: weight {e.get('weight')!r} is not a number") from err
        if w < 0 or w != w:
            raise DataError(f"{p}: source {k}: weight must not be negative")
        sp = Path(str(e["path"])).expanduser()
        if not sp.is_absolute():
            sp = p.parent / sp
        specs.append(InputSpec(str(sp), text_field=e.get("text_field", text_field), weight=w,
                               name=str(e.get("name", "")), share=True))
    if sum(s.weight for s in specs) <= 0:
        raise DataError(f"{p}: the weights sum to 0")
    return specs
