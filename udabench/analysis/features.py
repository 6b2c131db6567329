"""What the final models of a suite compute on its images: layer4 features for the class-center
distance (FADA eq. 9) and predictions with entropy maps for figure panels.

The choices the FADA paper leaves open (docs/analyses.md gives the reasons):
- features: the last backbone level (ResNet layer4, VGG-16 fc7; the classifier's input), final
  model in eval mode, one image at a time at the split's network input size;
- images: target = the eval split with its labels; source = as many source images as there are eval
  images, evenly spaced over the source split (GTA5 and SYNTHIA have no validation split);
- labels on the feature grid: a cell gets the class of more than half of the native-resolution
  label pixels it covers (area fractions); mixed or mostly ignored cells are left out;
- budget: at most ``samples_per_class`` cells per class and domain, uniformly without replacement
  with a fixed generator;
- scopes: ``joint`` = both domains' samples together (the paper's "feature joint distributions"),
  plus each domain alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Subset
from tqdm import tqdm

from ..classes import IGNORE_INDEX, get_class_set
from ..engine.rundir import RunDir
from ..errors import UdabenchError
from ..io import atomic_write_text
from .ccd import class_center_distance
from .export import colour_table, load_run, native_split, overlay_panels, predict
from .tables import ordered_groups

DOMAINS = ("source", "target")
CACHE = Path("analysis") / "ccd.json"
META = ("suite", "method", "method_label", "seed", "run_id")


def finished_runs(results: str | Path, suite_name: str) -> list[Path]:
    """Run directories of the suite that hold a final model (``done`` and a checkpoint; ensembles have none)."""
    runs = [run.path for run in RunDir.under(results, suite_name)
            if run.status == "done" and "method" in run.run and run.checkpoint.is_file()]
    if not runs:
        raise UdabenchError(f"no finished run with a checkpoint under {Path(results) / suite_name}; run the suite "
                            f"first (`udabench run suites/{suite_name}.yaml`).")
    return runs


def run_meta(run: Path) -> dict:
    """suite, method, method_label, seed and run_id of a run, from its last metrics row."""
    rows = RunDir.open(run).rows()
    if not rows:
        raise UdabenchError(f"{run / 'metrics.jsonl'} holds no metrics row; re-run this method.")
    return {key: rows[-1][key] for key in META}


def evenly_spaced(dataset, n: int) -> Subset:
    """``n`` items spread over the whole dataset (all of it when it is smaller)."""
    n = min(n, len(dataset))
    return Subset(dataset, [i * len(dataset) // n for i in range(n)])


def labels_on_grid(label: torch.Tensor, size, num_classes: int, min_fraction: float = 0.5) -> torch.Tensor:
    """The class of each cell of an h×w feature grid over an H×W label map, or ``IGNORE_INDEX``.

    A cell is labelled c when class c covers more than ``min_fraction`` of its label pixels; with
    0.5 that is a strict majority, so boundary cells whose features mix classes are left out.
    """
    fractions = torch.stack([F.adaptive_avg_pool2d((label == c)[None].float(), tuple(size))[0]
                             for c in range(num_classes)])
    best, cls = fractions.max(0)
    return torch.where(best > min_fraction, cls, torch.full_like(cls, IGNORE_INDEX))


class ClassSample:
    """A uniform sample without replacement of at most ``k`` items per class from a stream of batches.

    Each item draws a random key; the sample keeps the ``k`` smallest keys of every class seen so far,
    so memory stays at C·k features and the result does not depend on how the stream is batched.
    """

    def __init__(self, num_classes: int, k: int, seed: int = 0):
        self.num_classes, self.k = num_classes, k
        self.generator = torch.Generator().manual_seed(seed)
        self.features = self.labels = self.keys = None

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        keep = labels != IGNORE_INDEX
        features, labels = features[keep], labels[keep]
        keys = torch.rand(len(labels), generator=self.generator, dtype=torch.float64).to(labels.device)
        if self.keys is not None:
            features, labels = torch.cat([self.features, features]), torch.cat([self.labels, labels])
            keys = torch.cat([self.keys, keys])
        order = keys.argsort()
        order = order[labels[order].argsort(stable=True)]           # by class, then by key
        grouped = labels[order]
        count = torch.bincount(grouped, minlength=self.num_classes)
        rank = torch.arange(len(order), device=labels.device) - (count.cumsum(0) - count)[grouped]
        chosen = order[rank < self.k]
        self.features, self.labels, self.keys = features[chosen], labels[chosen], keys[chosen]


@torch.no_grad()
def sample_features(model, dataset, num_classes: int, samples_per_class: int, device: torch.device,
                    min_fraction: float = 0.5, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(features n×D, labels n): a class-wise sample of the layer4 feature cells of every image."""
    sample = ClassSample(num_classes, samples_per_class)
    for i in tqdm(range(len(dataset)), desc="features", unit="img", leave=False, disable=not progress):
        item = dataset[i]
        features = model(item["image"][None].to(device)).features[0].float()       # D×h×w
        grid = labels_on_grid(item["label"].to(device), features.shape[-2:], num_classes, min_fraction)
        sample.add(features.flatten(1).T, grid.flatten())
    return sample.features, sample.labels


def run_ccd(run: Path, samples_per_class: int, domains, device: torch.device, min_fraction: float = 0.5,
            progress: bool = True) -> list[dict]:
    """Long-form CCD rows of one finished run (one per scope and class); see ``suite_ccd``."""
    suite, model = load_run(run, device)
    class_set = get_class_set(suite.classes)
    target = native_split(suite, suite.data.eval)
    splits = {"source": evenly_spaced(native_split(suite, suite.data.source), len(target)), "target": target}
    samples = {d: sample_features(model, splits[d], class_set.num_classes, samples_per_class, device, min_fraction,
                                  progress) for d in domains}
    if len(samples) == 2:
        samples["joint"] = tuple(torch.cat(parts) for parts in zip(*samples.values()))
    meta, rows = run_meta(run), []
    for scope, (features, labels) in samples.items():
        ccd = class_center_distance(features, labels, class_set.num_classes)
        scale_free = class_center_distance(features, labels, class_set.num_classes, squared_denominator=True)
        count = torch.bincount(labels, minlength=class_set.num_classes)
        rows += [{**meta, "scope": scope, "class": name, "ccd": ccd[c].item(), "ccd_scale_free": scale_free[c].item(),
                  "samples": count[c].item()} for c, name in enumerate(class_set.names)]
    return rows


def suite_ccd(results: str | Path, suite_name: str, *, samples_per_class: int = 2000, domains=DOMAINS,
              device: str | torch.device = "cpu", progress: bool = True, min_fraction: float = 0.5) -> pd.DataFrame:
    """Class-center distance of every finished run of a suite, on its final model's layer4 features.

    Returns one row per (run, scope, class): suite, method, method_label, seed, run_id, scope
    (``source``, ``target``, and ``joint`` when both domains are given), class, ccd (FADA eq. 9),
    ccd_scale_free (squared denominator) and samples (feature cells used). Each run's rows are
    cached in ``<run>/analysis/ccd.json`` under the parameters, so a second report reads them back.
    """
    domains = tuple(domains)
    if not domains or set(domains) - set(DOMAINS) or len(set(domains)) != len(domains):
        raise UdabenchError(f"CCD domains must be 'source', 'target' or both, got {domains}.")
    if samples_per_class < 1:
        raise UdabenchError(f"the CCD feature budget must be at least 1 sample per class, got {samples_per_class}.")
    key = json.dumps({"samples_per_class": samples_per_class, "domains": domains, "min_fraction": min_fraction})
    rows = []
    for run in tqdm(finished_runs(results, suite_name), desc="ccd", unit="run", disable=not progress):
        file = run / CACHE
        cache = json.loads(file.read_text()) if file.is_file() else {}
        if key not in cache:
            cache[key] = run_ccd(run, samples_per_class, domains, torch.device(device), min_fraction, progress)
            file.parent.mkdir(exist_ok=True)
            atomic_write_text(file, json.dumps(cache))
        rows += cache[key]
    return pd.DataFrame(rows)


@dataclass
class PredictionPanels:
    """Eval images with their ground truth, and each method's prediction and entropy map of them
    (uint8 H×W×3 at the network input size; methods in table order)."""

    names: list[str]
    classes: str                                                             # class set name (colour legend)
    images: list[np.ndarray]
    labels: list[np.ndarray]
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)   # method label -> class colours
    entropies: dict[str, list[np.ndarray]] = field(default_factory=dict)     # method label -> viridis, 0..1


@torch.no_grad()
def prediction_panels(results: str | Path, suite_name: str, methods: list[str] | None = None, *, num_images: int = 3,
                      device: str | torch.device = "cpu") -> PredictionPanels:
    """``num_images`` eval images spread over the split, through the final model of the lowest-seed run
    of each method (all methods with a model when ``methods`` is None)."""
    device = torch.device(device)
    runs = pd.DataFrame([{**run_meta(run), "path": run} for run in finished_runs(results, suite_name)])
    if methods is not None:
        runs = runs[runs["method"].isin(methods)]
    chosen = [group.sort_values("seed").iloc[0] for _, group in ordered_groups(runs)]
    if not chosen:
        raise UdabenchError(f"none of the methods {methods} has a finished run in {Path(results) / suite_name}.")
    panels = None
    for run in chosen:
        suite, model = load_run(run["path"], device)
        if panels is None:   # one suite, one eval split: images and ground truth from the first run
            items = list(evenly_spaced(native_split(suite, suite.data.eval), num_images))
            panels = PredictionPanels([item["name"] for item in items], suite.classes, [], [])
        coloured = colour_panels(model, items, colour_table(get_class_set(suite.classes)), device)
        if not panels.images:
            panels.images, panels.labels = [c[0] for c in coloured], [c[3] for c in coloured]
        panels.predictions[run["method_label"]] = [c[1] for c in coloured]
        panels.entropies[run["method_label"]] = [c[2] for c in coloured]
    return panels


def colour_panels(model, items: list[dict], colours: np.ndarray, device: torch.device) -> list[list[np.ndarray]]:
    """[image, prediction, entropy map, ground truth] of each item as uint8 H×W×3 pictures (plain class colours)."""
    out = []
    for item in items:
        pred, entropy = predict(lambda x: model(x).main, item["image"], item["label"].shape, device)
        out.append(overlay_panels(item["image"], pred.numpy(), entropy.numpy(), item["label"].numpy(), colours,
                                  alpha=1.0))
    return out
