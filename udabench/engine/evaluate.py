"""Evaluation protocol: single scale, no flip, logits up-sampled to the native label resolution."""

from __future__ import annotations

import torch

from ..losses import entropy_map, upsample
from ..metrics import confusion_matrix
from .distributed import all_reduce_sum


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device: torch.device, autocast, world_size: int = 1):
    """Return (C×C confusion matrix on ``device``, mean normalised prediction entropy).

    The entropy (label-free, at logit resolution) feeds the ``target-entropy`` selection protocol.
    """
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    entropy = torch.zeros(2, dtype=torch.float64, device=device)  # (sum, count)
    for batch in loader:
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        with autocast():
            logits = model(image).main
        ent = entropy_map(logits.float().softmax(1))
        entropy += torch.stack([ent.sum().double(), torch.tensor(ent.numel(), dtype=torch.float64, device=device)])
        pred = upsample(logits.float(), label.shape[-2:]).argmax(1)
        cm += confusion_matrix(pred, label, num_classes)
    all_reduce_sum(cm, world_size)
    all_reduce_sum(entropy, world_size)
    model.train(was_training)
    return cm, float(entropy[0] / entropy[1].clamp(min=1))
