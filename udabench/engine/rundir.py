"""Run directories (DESIGN §3): ``results/<suite>/<method>/seed<S>-<hash>/``.

The id is a hash of the resolved run config, so re-running a suite finds its finished runs (``done``)
and resumes unfinished ones from ``checkpoints/last.pt``. ``metrics.jsonl`` holds one
self-describing JSON row per evaluation; reports read nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml


def run_id(resolved: dict) -> str:
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    return f"seed{resolved['seed']}-{hashlib.sha1(blob).hexdigest()[:10]}"


class RunDir:
    def __init__(self, results: str | Path, suite: str, method: str, resolved: dict):
        self.id = run_id(resolved)
        self.path = Path(results) / suite / method / self.id
        self.resolved = resolved

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    done_marker = property(lambda self: self.path / "done")
    failed_marker = property(lambda self: self.path / "failed")

    def eval_file(self, step: int) -> Path:
        """Per-image confusion matrices of the evaluation at ``step`` (see ``Evaluation.save``)."""
        return self.path / "eval" / f"step{step:07d}.npz"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    @property
    def status(self) -> str:
        if self.done_marker.exists():
            return "done"
        if self.checkpoint.exists():
            return "partial"
        return "failed" if self.failed_marker.exists() else "new"

    def prepare(self, env: dict) -> None:
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.failed_marker.unlink(missing_ok=True)
        atomic_write(self.config, yaml.safe_dump(self.resolved, sort_keys=False))
        atomic_write(self.path / "env.json", json.dumps(env, indent=2))

    def append_metrics(self, row: dict) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, max_step: int) -> None:
        """Drop rows newer than the checkpoint we resume from (they will be evaluated again)."""
        rows = [r for r in self.read_metrics() if r["step"] <= max_step]
        atomic_write(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def mark_done(self) -> None:
        self.done_marker.write_text("")

    def mark_failed(self, message: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.failed_marker.write_text(message + "\n")


def load_final_model(suite, checkpoint: Path, device):
    """The segmentation model saved in a run's checkpoint, built from the suite, in eval mode."""
    import torch

    from ..classes import get_class_set
    from ..models import build_model

    model = build_model(suite.model, get_class_set(suite.classes).num_classes)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["slots"]["model"]["module"])
    return model.to(device).eval()


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
