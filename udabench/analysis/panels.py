"""Pictures of predictions: the overlay strip of ``udabench viz`` and the per-method panels of the
``predictions`` figure (ADVENT Fig. 1 layout), from the final models of a suite's runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..classes import colour_table, get_class_set
from ..data import evenly_spaced
from ..engine.predict import colour_panels
from ..errors import UdabenchError
from .records import load_records
from .runs import load_run, model_runs, native_split
from .tables import ordered_groups

log = logging.getLogger("udabench")


@dataclass
class PredictionPanels:
    """Eval images with their ground truth, and each table row's prediction and entropy map of them
    (uint8 H×W×3 at the network input size; rows in table order)."""

    names: list[str]
    classes: str                                                             # class set name (colour legend)
    images: list[np.ndarray]
    labels: list[np.ndarray]
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)   # row label -> class colours
    entropies: dict[str, list[np.ndarray]] = field(default_factory=dict)     # row label -> viridis, 0..1


@torch.no_grad()
def prediction_panels(results: str | Path, suite_name: str, methods: list[str] | None = None, *, num_images: int = 3,
                      device: str | torch.device = "cpu", records: pd.DataFrame | None = None) -> PredictionPanels:
    """``num_images`` eval images spread over the split, through the final model of the lowest-seed run
    of each configuration (of ``methods`` only, when given; of the runs of ``records``, the suite's rows of
    ``load_records``, when given) that has a model. A run whose checkpoint is damaged is skipped with a warning
    naming it (the next seed stands in)."""
    device = torch.device(device)
    runs = model_runs(load_records(results, suite_name) if records is None else records)
    if methods is not None:
        runs = runs[runs["method"].isin(methods)]
    panels = None
    for _, group in ordered_groups(runs):
        loaded = _first_loadable(group["run_dir"], device)
        if loaded is None:
            continue
        suite, model = loaded
        if panels is None:   # one suite, one eval split: images and ground truth from the first run
            items = list(evenly_spaced(native_split(suite, suite.data.eval), num_images))
            panels = PredictionPanels([item["name"] for item in items], suite.classes, [], [])
        coloured = colour_panels(model, items, colour_table(get_class_set(suite.classes)), device)
        if not panels.images:
            panels.images, panels.labels = [c[0] for c in coloured], [c[3] for c in coloured]
        label = group["label"].iloc[0]
        panels.predictions[label] = [c[1] for c in coloured]
        panels.entropies[label] = [c[2] for c in coloured]
    if panels is None:
        which = f" of {', '.join(methods)}" if methods is not None else ""
        raise UdabenchError(f"no finished run{which} in {Path(results) / suite_name} has a readable model of its "
                            f"own (ensembles and released checkpoints have none); run those methods first.")
    return panels


def _first_loadable(run_dirs, device: torch.device):
    for run_dir in run_dirs:
        try:
            return load_run(run_dir, device)
        except UdabenchError as exc:
            log.warning(f"prediction panels: skipped {run_dir}: {exc}")
    return None
