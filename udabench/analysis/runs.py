"""The final model of a finished run and what the analyses feed it: its splits at the evaluated sizes,
and predictions up-sampled as in the evaluation protocol. Shared by export, CCD features and figure panels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Subset

from ..config import DatasetConfig, EvalConfig, Suite
from ..data import get_dataset
from ..engine.evaluate import class_scores
from ..engine.rundir import RunDir
from ..engine.trained import final_model
from ..losses import entropy_map
from ..vocabulary import Kind


def load_run(run: str | Path, device: torch.device) -> tuple[Suite, torch.nn.Module]:
    """The suite and the final segmentation model of a finished run directory (``trained.final_model``)."""
    rundir = RunDir.open(run)
    return rundir.suite(), final_model(rundir, device)


def model_runs(records: pd.DataFrame) -> pd.DataFrame:
    """One record per run of ``records`` that trained a model of its own (measured, not an ensemble),
    by table order then seed."""
    runs = records[records["kind"] == Kind.MEASURED].drop_duplicates("run_dir")
    own_model = [("method" in RunDir.open(path).run) for path in runs["run_dir"]]
    return runs[own_model].sort_values(["row_order", "seed"], kind="stable")


def native_split(suite: Suite, ds: DatasetConfig, limit: int | None = None):
    """One of the suite's datasets at its network input size with labels at native resolution (as evaluated)."""
    return get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes, resize_label=False,
                       limit=limit or ds.limit, synthetic=suite.synthetic)


def evenly_spaced(dataset, n: int) -> Subset:
    """``n`` items spread over the whole dataset (all of it when it is smaller)."""
    n = min(n, len(dataset))
    return Subset(dataset, [i * len(dataset) // n for i in range(n)])


def predict(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, size, device: torch.device,
            options: EvalConfig = EvalConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and normalised entropy (H×W, on the CPU) of one 3×h×w image; the class scores are
    up-sampled bilinearly to ``size`` first, as in the evaluation protocol (``options``)."""
    scores, _ = class_scores(lambda x: forward(x).float(), image[None].to(device), size, options)
    prob = scores if options.flip else scores.softmax(1)   # flip averaging already gives probabilities
    return prob.argmax(1)[0].cpu(), entropy_map(prob)[0].cpu()
