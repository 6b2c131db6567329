"""Layer4 features of the final models of a suite, sampled class by class for the class-center distance
(FADA eq. 9, ``ccd.py``).

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
import logging
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ..classes import IGNORE_INDEX, get_class_set
from ..data import evenly_spaced
from ..errors import UdabenchError
from ..io import atomic_write_text
from ..progress import progress_bar
from .ccd import class_center_distance
from .records import load_records
from .runs import load_run, model_runs, native_split

log = logging.getLogger("udabench")

DOMAINS = ("source", "target")
CACHE = Path("analysis") / "ccd.json"
# What a CCD row says about its run (records columns): enough to place it in the tables' rows.
META = ("suite", "method", "method_label", "label", "config", "role", "kind", "row_order", "seed", "run_id",
        "run_dir")


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
    for i in progress_bar(range(len(dataset)), "features", unit="img", disable=not progress):
        item = dataset[i]
        features = model(item["image"][None].to(device)).features[0].float()       # D×h×w
        grid = labels_on_grid(item["label"].to(device), features.shape[-2:], num_classes, min_fraction)
        sample.add(features.flatten(1).T, grid.flatten())
    return sample.features, sample.labels


def run_ccd(run: str | Path, samples_per_class: int, domains, device: torch.device, min_fraction: float = 0.5,
            progress: bool = True) -> list[dict]:
    """CCD values of one finished run: one dict per scope and class (scope, class, ccd, ccd_scale_free, samples)."""
    suite, model = load_run(run, device)
    class_set = get_class_set(suite.classes)
    target = native_split(suite, suite.data.eval)
    splits = {"source": evenly_spaced(native_split(suite, suite.data.source), len(target)), "target": target}
    samples = {d: sample_features(model, splits[d], class_set.num_classes, samples_per_class, device, min_fraction,
                                  progress) for d in domains}
    if len(samples) == 2:
        samples["joint"] = tuple(torch.cat(parts) for parts in zip(*samples.values()))
    rows = []
    for scope, (features, labels) in samples.items():
        ccd = class_center_distance(features, labels, class_set.num_classes)
        scale_free = class_center_distance(features, labels, class_set.num_classes, squared_denominator=True)
        count = torch.bincount(labels, minlength=class_set.num_classes)
        rows += [{"scope": scope, "class": name, "ccd": ccd[c].item(), "ccd_scale_free": scale_free[c].item(),
                  "samples": count[c].item()} for c, name in enumerate(class_set.names)]
    return rows


def suite_ccd(results: str | Path, suite_name: str, *, records: pd.DataFrame | None = None, samples_per_class: int = 2000,
              domains=DOMAINS, device: str | torch.device = "cpu", progress: bool = True,
              min_fraction: float = 0.5) -> pd.DataFrame:
    """Class-center distance of every finished run of a suite that has a model, on its layer4 features (of the runs
    of ``records``, ``load_records``'s rows of that suite, when given: e.g. those ``report --where`` keeps).

    Returns one row per (run, scope, class): the run's ``META`` (its table row as ``load_records`` names
    it), scope (``source``, ``target``, and ``joint`` when both domains are given), class, ccd (FADA eq. 9),
    ccd_scale_free (squared denominator) and samples (feature cells used). Each run's values are cached in
    ``<run>/analysis/ccd.json`` under the parameters, so a second report reads them back. A run whose
    checkpoint is damaged is left out with a warning naming it.
    """
    domains = tuple(domains)
    if not domains or set(domains) - set(DOMAINS) or len(set(domains)) != len(domains):
        raise UdabenchError(f"CCD domains must be 'source', 'target' or both, got {domains}.")
    if samples_per_class < 1:
        raise UdabenchError(f"the CCD feature budget must be at least 1 sample per class, got {samples_per_class}.")
    runs = model_runs(load_records(results, suite_name) if records is None else records)
    if runs.empty:
        raise UdabenchError(f"no finished run with a model of its own under {Path(results) / suite_name}; run the "
                            f"suite first (`udabench run suites/{suite_name}.yaml`).")
    key = json.dumps({"samples_per_class": samples_per_class, "domains": domains, "min_fraction": min_fraction})
    rows = []
    for _, run in progress_bar(runs.iterrows(), "ccd", unit="run", total=len(runs), final=True, disable=not progress):
        file = Path(run["run_dir"]) / CACHE
        cache = _read_cache(file)
        if key not in cache:
            try:
                cache[key] = run_ccd(run["run_dir"], samples_per_class, domains, torch.device(device), min_fraction,
                                     progress)
            except UdabenchError as exc:
                log.warning(f"CCD: skipped {run['run_dir']}: {exc}")
                continue
            file.parent.mkdir(exist_ok=True)
            atomic_write_text(file, json.dumps(cache))
        meta = {k: run[k] for k in META}
        rows += [{**meta, **values} for values in cache[key]]
    return pd.DataFrame(rows)


def _read_cache(file: Path) -> dict:
    """The cached CCD values of a run; a damaged cache is recomputed (a warning names it)."""
    if not file.is_file():
        return {}
    try:
        cache = json.loads(file.read_text())
    except json.JSONDecodeError:
        cache = None
    if isinstance(cache, dict):
        return cache
    log.warning(f"{file} is damaged; its CCD values are computed again")
    return {}
