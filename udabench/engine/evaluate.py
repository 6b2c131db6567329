"""Evaluation protocol and the scores of a result row.

udabench's protocol: single scale, no flip; class scores up-sampled bilinearly (``align_corners=False``)
to the native label resolution; one confusion matrix from which every class set of the suite is scored
(e.g. SYNTHIA mIoU16 and mIoU13). The suite's ``eval:`` block changes it (flip averaging, labels at the
input size, ``align_corners``: the official evaluations, docs/protocol.md); rows record the choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..classes import get_class_set
from ..config import EvalConfig, Suite
from ..losses import entropy_map, upsample
from ..metrics import mean_iou, per_class_iou, per_image_confusion
from .distributed import all_reduce_sum, gather_to_main


@dataclass
class Evaluation:
    """One pass over an eval split: the summed matrix (on the device) and one matrix per image."""

    cm: torch.Tensor                     # C×C int64, rows = ground truth, all ranks summed
    per_image: np.ndarray | None         # n_images×C×C int64 on the main rank (None elsewhere)
    names: list[str]
    entropy: float                       # mean normalised prediction entropy (label-free)


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader, num_classes: int, device: torch.device,
             autocast, world_size: int = 1, options: EvalConfig = EvalConfig()) -> Evaluation:
    """Score ``forward`` (image batch -> N×C×h×w logits or log-probabilities) on every batch of ``loader``.

    Per-image matrices come from one ``bincount`` per batch (image index folded into the bin), so
    the summed matrix is their exact total. The entropy is computed at score resolution, from the
    forward of the image itself (not flip-averaged).
    """
    def logits_of(image: torch.Tensor) -> torch.Tensor:
        with autocast():
            return forward(image).float()

    per_image, names = [], []
    entropy = torch.zeros(2, dtype=torch.float64, device=device)  # (sum, count)
    for batch in loader:
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        scores, logits = class_scores(logits_of, image, label.shape[-2:], options)
        ent = entropy_map(logits.softmax(1))
        entropy += torch.stack([ent.sum().double(), torch.tensor(ent.numel(), dtype=torch.float64, device=device)])
        per_image.append(per_image_confusion(scores.argmax(1), label, num_classes))
        names += list(batch["name"])
    local = torch.cat(per_image) if per_image else torch.zeros(0, num_classes, num_classes, dtype=torch.int64,
                                                               device=device)
    cm = all_reduce_sum(local.sum(0), world_size)
    all_reduce_sum(entropy, world_size)
    gathered, names = gather_to_main(local.cpu().numpy(), names, world_size)
    return Evaluation(cm, gathered, names, float(entropy[0] / entropy[1].clamp(min=1)))


def class_scores(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, size,
                 options: EvalConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(class scores at ``size`` whose argmax is the prediction, the image's logits at score resolution).

    The scores are the logits up-sampled bilinearly; with ``options.flip``, the mean of the softmax of
    the image's and of its horizontal flip's up-sampled logits, the latter flipped back (MaxSquare
    ``tools/evaluate.py:124-139``: softmax at full size, then averaged).
    """
    logits = forward(image)
    scores = upsample(logits, size, options.align_corners)
    if options.flip:
        flipped = upsample(forward(image.flip(-1)), size, options.align_corners)
        scores = (scores.softmax(1) + flipped.softmax(1).flip(-1)) / 2
    return scores, logits


def scores(suite: Suite, cm: torch.Tensor, entropy: float) -> dict:
    """Per-class IoU and mIoU (in %) of every class set of the suite, from one confusion matrix."""
    trained = suite.class_set
    iou = per_class_iou(cm).cpu()
    class_sets = {}
    for name in dict.fromkeys([suite.classes, *suite.eval_class_sets]):
        subset = get_class_set(name)
        idx = trained.subset_indices(subset)
        class_sets[name] = {"iou": {n: _pct(iou[i]) for n, i in zip(subset.names, idx)},
                            "miou": _pct(mean_iou(cm, idx))}
    return {"miou": class_sets[suite.classes]["miou"], "class_sets": class_sets,
            "confusion": cm.cpu().tolist(), "target_entropy": entropy}


def _pct(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(100 * value, 4)
