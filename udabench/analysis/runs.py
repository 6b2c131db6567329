"""The final model of a finished run and what the analyses feed it: its splits at the evaluated sizes (predictions
are ``engine/predict.py``'s). Shared by export, CCD features and figure panels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..config import DatasetConfig, Suite
from ..data import get_dataset
from ..engine.rundir import RunDir
from ..engine.trained import final_model
from ..vocabulary import Kind, RunKind


def load_run(run: str | Path, device: torch.device) -> tuple[Suite, torch.nn.Module]:
    """The suite and the final segmentation model of a finished run directory (``trained.final_model``)."""
    rundir = RunDir.open(run)
    return rundir.suite(), final_model(rundir, device)


def model_runs(records: pd.DataFrame) -> pd.DataFrame:
    """One record per run of ``records`` that trained a model of its own (measured, not an ensemble),
    by table order then seed."""
    runs = records[records["kind"] == Kind.MEASURED].drop_duplicates("run_dir")
    own_model = [RunDir.open(path).kind == RunKind.TRAINED for path in runs["run_dir"]]
    return runs[own_model].sort_values(["row_order", "seed"], kind="stable")


def native_split(suite: Suite, ds: DatasetConfig, limit: int | None = None):
    """One of the suite's datasets at its network input size with labels at native resolution (as evaluated)."""
    return get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes, resize_label=False,
                       limit=limit or ds.limit, synthetic=suite.synthetic)
