"""UDA losses as pure functions on tensors (DESIGN §5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data.classes import IGNORE_INDEX


def upsample(logits: torch.Tensor, size) -> torch.Tensor:
    """Bilinear up-sampling of N×C×h×w logits to ``size`` (H, W), the one interpolation udabench uses."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-mean cross-entropy of logits up-sampled to the label size; ignored pixels excluded.

    Returns 0 (with a graph) when every pixel is ignored, where plain cross-entropy would give NaN.
    """
    logits = upsample(logits, label.shape[-2:])
    if not (label != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), label, ignore_index=ignore_index)


def entropy_map(prob: torch.Tensor) -> torch.Tensor:
    """N×H×W Shannon entropy of a softmax map, normalised to [0, 1] by log C (ADVENT eq. 2)."""
    return -(prob * prob.clamp_min(1e-30).log()).sum(1) / math.log(prob.shape[1])
