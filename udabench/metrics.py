"""Segmentation metrics: confusion matrix on the model's device, per-class IoU, class-subset mIoU.

The matrix is accumulated with one ``bincount`` per batch (no per-class loop, no host copy);
mIoU is the nan-mean over classes, so a class absent from both prediction and label is left out
(ADVENT's ``per_class_iu`` + ``nanmean`` protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """C×C int64 matrix on ``pred``'s device; rows = ground truth, columns = prediction.

    Pixels whose label is ``ignore_index`` or outside [0, C) are not counted.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
    return per_image_confusion(pred.reshape(1, -1), label.reshape(1, -1), num_classes, ignore_index)[0]


def per_image_confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int,
                        ignore_index: int = 255) -> torch.Tensor:
    """N×C×C int64 matrices, one per image of the batch (first dimension), from one ``bincount``:
    the image index is folded into the bin, so their sum is the batch's matrix exactly."""
    n = pred.shape[0]
    label = label.to(torch.int64)
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes)
    index = label[keep] * num_classes + pred[keep].to(torch.int64)
    if n > 1:  # one image (the summed-matrix hot path) needs no image offset: skip that pass
        image = torch.arange(n, device=pred.device).view(n, *([1] * (pred.dim() - 1))).expand_as(pred)
        index += image[keep] * num_classes ** 2
    return torch.bincount(index, minlength=n * num_classes ** 2).reshape(n, num_classes, num_classes)


def per_class_iou(cm: torch.Tensor) -> torch.Tensor:
    """IoU per class = TP / (TP + FP + FN); NaN where the class is in neither prediction nor label.

    ``cm`` is one C×C matrix or a stack of them (…×C×C, e.g. bootstrap replicates): the result is …×C.
    """
    cm = cm.to(torch.float64)
    tp = cm.diagonal(dim1=-2, dim2=-1)
    union = cm.sum(-2) + cm.sum(-1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(cm: torch.Tensor, classes: Sequence[int] | None = None) -> float:
    """Nan-mean IoU over the given class indices (all classes by default)."""
    iou = per_class_iou(cm)
    if classes is not None:
        iou = iou[list(classes)]
    return float(torch.nanmean(iou))
