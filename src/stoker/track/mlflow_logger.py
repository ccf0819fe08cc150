"""Metrics to MLflow (``loggers=[mlflow]``).

Uses an explicit :class:`mlflow.MlflowClient` (no process-global active run), so several
runs in one process never mix. The tracking URI is the ``tracking_uri`` option, else
``$MLFLOW_TRACKING_URI``, else a file store in ``<run_dir>/mlruns``. The MLflow run id is
kept in ``mlflow_run_id.txt`` so a resumed stoker run continues the same MLflow run.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stoker.errors import UserError
from stoker.track.loggers import metric_name

ID_FILE = "mlflow_run_id.txt"
_MAX_PARAM = 500


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            text = v if isinstance(v, str) else json.dumps(v, default=str)
            out[key] = text[:_MAX_PARAM]
    return out


class MlflowLogger:
    def __init__(self, run_dir: Path, config: dict[str, Any], *, tracking_uri: str | None = None,
                 experiment: str | None = None, run_name: str | None = None,
                 resume_step: int | None = None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._names: dict[str, str] = {}  # MLflow name -> the metric that has it
        self.tracking_uri = (tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                             or (self.run_dir / "mlruns").resolve().as_uri())
        if self.tracking_uri.startswith("file:") or "://" not in self.tracking_uri:
            # MLflow 3 keeps its file store behind an opt-in; it is the store that needs no
            # server and no database driver, so a local run opts in for its own directory.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        exp_name = experiment or str(config.get("name") or "stoker")
        exp = self.client.get_experiment_by_name(exp_name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(exp_name)
        id_file = self.run_dir / ID_FILE
        if id_file.is_file():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(exp_id, run_name=run_name or self.run_dir.name,
                                         tags={"stoker.run_dir": str(self.run_dir.resolve())})
            self.run_id = run.info.run_id
            id_file.write_text(self.run_id + "\n")
            params = [Param(k, v) for k, v in _flatten(config).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(self._name(k), float(v.item() if hasattr(v, "item") else v), ts, int(step))
                 for k, v in metrics.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def _name(self, name: str) -> str:
        """MLflow's name for a metric (``lr/group0`` -> ``lr.group0``: see metric_name)."""
        mapped = metric_name("mlflow", name)
        first = self._names.setdefault(mapped, name)
        if first != name:
            raise UserError(f"the metrics {first!r} and {name!r} would both be {mapped!r} in "
                            "MLflow, which has no '/' in names; rename one of them")
        return mapped

    def log_text(self, name: str, text: str, step: int) -> None:
        self.client.log_text(self.run_id, text, f"samples/{name.replace('/', '_')}-{step:08d}.txt")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
