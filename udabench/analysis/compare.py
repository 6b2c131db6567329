"""Is A really better than B? A paired hierarchical bootstrap: seed pairs, then eval images within each.

For every seed run by both methods, the selected evaluation of each run has an ``eval_file`` with one
confusion matrix per eval image. A bootstrap replicate draws as many seed pairs as there are, with
replacement, then for each drawn pair its eval images with replacement; both methods of a pair are scored
on the same drawn images (runs are paired by image name), per-class IoUs are recomputed from the re-summed
matrices, and the statistic of a replicate is the mean over its drawn pairs of IoU_A − IoU_B. The point
estimate uses every seed pair and image once; the CI is the percentile interval of the replicates, so it
spreads with the seeds as well as with the images. Each pair's own delta is reported beside it.
docs/reporting.md states the procedure.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..engine.rundir import RunDir
from ..errors import CheckpointError, UdabenchError
from ..metrics import per_class_iou

log = logging.getLogger("udabench")


@dataclass
class Comparison:
    table: pd.DataFrame      # rows = classes, then one mIoU per class set; A, B, delta, CI low, CI high,
                             # then "delta seed S" per seed pair
    seeds: list[int]         # the paired seeds
    images: int
    notes: list[str]         # a warning for fewer than 3 seed pairs, the procedure, and seeds left out


def paired_bootstrap(selected: pd.DataFrame, a: str, b: str, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> Comparison:
    """Compare methods ``a`` and ``b`` (method names) on the selected rows of one suite and eval target.

    A seed pair whose per-image matrices are damaged is left out with a warning naming the file.
    """
    rows = {m: _one_run_per_seed(selected, m) for m in (a, b)}
    paired = sorted(set(rows[a].index) & set(rows[b].index))
    if not paired:
        raise UdabenchError(f"--compare {a} {b}: no seed was run by both methods (seeds of {a}: "
                            f"{sorted(rows[a].index)}, of {b}: {sorted(rows[b].index)}); pairs need equal seeds.")
    loaded, damaged = _load_pairs(rows, a, b, paired)
    if not loaded:
        raise UdabenchError(f"--compare {a} {b}: the per-image matrices of every seed pair are damaged (see the "
                            f"warnings above); re-run those runs.")
    seeds = sorted(loaded)
    first = rows[a].loc[seeds[0]]
    cms = _aligned([rows[m].loc[s] for s in seeds for m in (a, b)], [part for s in seeds for part in loaded[s]])
    cms = cms.reshape(len(seeds), 2, *cms.shape[1:])                     # seed pair × method × image × C × C
    class_names = list(first["class_sets"][_training_set(first)]["iou"])
    if cms.shape[-1] != len(class_names):
        raise UdabenchError(f"{first['run_dir']}: the per-image matrices are {cms.shape[-1]}×{cms.shape[-1]} but the "
                            f"run scores {len(class_names)} classes ({_training_set(first)}).")
    subsets = {f"mIoU{len(r['iou'])}": [class_names.index(c) for c in r["iou"]] for r in first["class_sets"].values()}
    label = {m: rows[m].loc[seeds[0], "label"] for m in (a, b)}
    stats, per_pair = bootstrap_delta(cms, list(subsets.values()), resamples, level, seed)
    columns = [label[a], label[b], "delta", "CI low", "CI high", *(f"delta seed {s}" for s in seeds)]
    table = pd.DataFrame(dict(zip(columns, [*stats, *per_pair])),
                         index=pd.Index([*class_names, *subsets], name="class"))
    unpaired = {m: sorted(set(rows[m].index) - set(paired)) for m in (a, b)}
    pairs = f"{len(seeds)} seed pair{'s' * (len(seeds) != 1)}"
    notes = [*_few_seeds_warning(seeds),
             f"{100 * level:g}% CI: hierarchical percentile bootstrap ({resamples} resamples, RNG seed {seed}): the "
             f"{pairs} drawn with replacement, then the {cms.shape[2]} eval images within each drawn pair, with "
             f"replacement (the same images for both methods); a resample's delta is the mean over its drawn pairs. "
             f"'delta seed S': the delta of seed pair S alone."]
    notes += [f"Seeds of {label[m]} without a partner (left out): {', '.join(map(str, s))}."
              for m, s in unpaired.items() if s]
    if damaged:
        notes.append(f"Seeds left out because a per-image matrix file is damaged: {', '.join(map(str, damaged))}.")
    return Comparison(table, seeds, cms.shape[2], notes)


def bootstrap_delta(cms: np.ndarray, subsets: list[list[int]], resamples: int, level: float, seed: int):
    """Mean IoU of A and of B over seed pairs, their mean delta and its hierarchical percentile CI; the delta of
    each seed pair.

    ``cms`` is seed pair × (A, B) × image × C × C. Returns the five arrays, then one array per seed pair, each
    over the C classes followed by one mIoU (nan-mean over the class indices) per entry of ``subsets``.
    """
    pairs, _, n_images, c, _ = cms.shape
    flat = cms.reshape(pairs, 2, n_images, c * c).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                  # all-NaN slices (absent classes) stay NaN
        point = _with_mious(_iou(flat.sum(2).reshape(pairs, 2, c, c)), subsets)           # pair × method × K
        resampled = _resample(flat, resamples, seed).reshape(resamples, pairs, 2, c, c)
        boot = _with_mious(_iou(resampled), subsets)                            # R × drawn pair × method × K
        tail = 100 * (1 - level) / 2
        low, high = np.nanpercentile(np.nanmean(boot[:, :, 0] - boot[:, :, 1], 1), [tail, 100 - tail], axis=0)
        per_pair = point[:, 0] - point[:, 1]
        return (np.nanmean(point[:, 0], 0), np.nanmean(point[:, 1], 0), np.nanmean(per_pair, 0), low, high), per_pair


def _resample(flat: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Re-summed matrices, replicate × drawn pair × method × C²: ``flat`` (pair × method × image × C²) resampled
    as seed pairs with replacement, then images with replacement within each drawn pair (an image drawn k times
    counts k times), one image draw per drawn pair shared by its two methods."""
    pairs, _, n_images, cc = flat.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, pairs, size=(resamples, pairs))
    draws = rng.integers(0, n_images, size=(resamples, pairs, n_images))
    weights = np.zeros((resamples, pairs, n_images))
    np.add.at(weights, (np.arange(resamples)[:, None, None], np.arange(pairs)[None, :, None], draws), 1)
    out = np.empty((resamples, pairs, 2, cc))
    for pair in range(pairs):
        drawn = picks == pair
        out[drawn] = (weights[drawn] @ flat[pair]).transpose(1, 0, 2)
    return out


def _few_seeds_warning(seeds: list[int]) -> list[str]:
    """A warning line when fewer than 3 seed pairs are behind the CI."""
    if len(seeds) >= 3:
        return []
    which = ", ".join(map(str, seeds))
    if len(seeds) == 1:
        return [f"Warning: only 1 seed pair ({which}): the CI covers the eval images only, not the training seed; "
                f"run at least 3 seeds of both methods."]
    return [f"Warning: only {len(seeds)} seed pairs ({which}): the CI says little about how the result varies with "
            f"the training seed; run at least 3 seeds of both methods."]


def _with_mious(iou: np.ndarray, subsets: list[list[int]]) -> np.ndarray:
    return np.concatenate([iou, *(np.nanmean(iou[..., idx], -1, keepdims=True) for idx in subsets)], -1)


def _one_run_per_seed(selected: pd.DataFrame, method: str) -> pd.DataFrame:
    runs = selected[selected["method"] == method]
    twice = runs["seed"][runs["seed"].duplicated()].tolist()
    if twice:
        rows = sorted(set(runs.loc[runs["seed"] == twice[0], "label"]))
        raise UdabenchError(f"--compare: method {method!r} has several runs with seed {twice[0]} (table rows "
                            f"{'; '.join(rows)}: {', '.join(runs.loc[runs['seed'] == twice[0], 'run_dir'])}); keep "
                            f"one configuration per method (e.g. with --results pointing at one set of runs).")
    return runs.set_index("seed")


def _load_pairs(rows: dict[str, pd.DataFrame], a: str, b: str, seeds: list[int]):
    """({seed: [(cm, names) of A, of B]}, seeds whose files are damaged, each named in a warning)."""
    loaded, damaged = {}, []
    for seed in seeds:
        try:
            loaded[seed] = [_per_image(rows[m].loc[seed]) for m in (a, b)]
        except CheckpointError as exc:
            log.warning(f"--compare {a} {b}: seed {seed} left out: {exc}")
            damaged.append(seed)
    return loaded, damaged


def _per_image(row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    file = row.get("eval_file")
    if not isinstance(file, str):
        raise UdabenchError(f"run {row['run_dir']} (step {row['step']}) has no per-image confusion matrices "
                            f"('eval_file' is missing from its metrics row); --compare needs runs evaluated "
                            f"by a udabench version that saves them. Re-run it.")
    cm, names = RunDir.open(row["run_dir"]).load_eval(file)
    return cm, np.array(names)


def _aligned(rows: list[pd.Series], loaded: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Every run's per-image matrices, images in one order (sorted names); all runs must share the images."""
    names, stacked = None, []
    for row, (cm, image_names) in zip(rows, loaded):
        order = np.argsort(image_names)
        if names is None:
            names = image_names[order]
        elif len(image_names) != len(names) or (image_names[order] != names).any():
            raise UdabenchError(f"{row['run_dir']}/{row['eval_file']}: evaluated on other images than "
                                f"{rows[0]['run_dir']}; a paired comparison needs both methods scored on the "
                                f"same eval images.")
        stacked.append(cm[order])
    return np.stack(stacked)


def _iou(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU (%) of ``...×C×C`` matrices (``metrics.per_class_iou``); NaN for an absent class."""
    return 100 * per_class_iou(torch.from_numpy(cm)).numpy()


def _training_set(row: pd.Series) -> str:
    """The class set the confusion matrix is over: the first of ``class_sets`` (evaluate.scores)."""
    return next(iter(row["class_sets"]))

