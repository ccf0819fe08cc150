"""Metrics to Weights & Biases (``loggers=[wandb]``).

The W&B run id is derived from the run directory and kept in ``wandb_run_id.txt``, so a
resumed stoker run continues the same W&B run instead of starting a new one. Offline mode
(``WANDB_MODE=offline``) writes the usual ``wandb/offline-run-*`` files under the run dir.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ID_FILE = "wandb_run_id.txt"


class WandbLogger:
    def __init__(self, run_dir: Path, config: dict[str, Any], *, project: str | None = None,
                 entity: str | None = None, name: str | None = None, mode: str | None = None,
                 tags: list[str] | tuple[str, ...] = (), resume_step: int | None = None,
                 set_tracker: bool = True, **init_options: Any) -> None:
        import wandb

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.run_dir / ID_FILE
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
            id_file.write_text(run_id + "\n")
        self._last_step = resume_step if resume_step is not None else -1
        self.run = wandb.init(
            project=project or os.environ.get("WANDB_PROJECT") or "stoker", entity=entity,
            name=name or self.run_dir.name, id=run_id, resume="allow", dir=str(self.run_dir),
            config=dict(config), tags=list(tags) or None, mode=mode, reinit="create_new",
            **init_options,
        )
        if set_tracker:
            from stoker.track.lineage import WandbTracker, set_lineage_tracker

            set_lineage_tracker(WandbTracker(run=self.run))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        values = {k: float(v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
        self.run.log(values, step=int(step))
        self._last_step = max(self._last_step, int(step))

    def log_text(self, name: str, text: str, step: int) -> None:
        import wandb

        self.run.log({name: wandb.Html(f"<pre>{_escape(text)}</pre>")}, step=int(step))

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.run.config.update(dict(config), allow_val_change=True)

    def close(self) -> None:
        from stoker.track.lineage import WandbTracker, get_lineage_tracker, set_lineage_tracker

        tracker = get_lineage_tracker()
        if isinstance(tracker, WandbTracker) and tracker._run is self.run:
            set_lineage_tracker(None)
        self.run.finish()


def _escape(text: str) -> str:
    import html

    return html.escape(text)
