"""What a trained model predicts, as the evaluation protocol scores it, and the pictures of its predictions.

Every evaluation scores the main head (``main_logits``; the auxiliary head is a training device), up-sampled as
``evaluate.class_scores`` does. Evaluations, ensembles, the teacher's labels, exports, panels and benchmarks call
it here; the monitor's live panels and the report's figures draw the same pictures (``colour_panels``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..config import EvalConfig
from ..losses import entropy_map
from .evaluate import class_scores

Forward = Callable[[torch.Tensor], torch.Tensor]   # N×3×H×W images -> N×C×h×w class scores


def main_logits(model: torch.nn.Module) -> Forward:
    """The forward every evaluation scores: the main head's N×C×h×w logits."""
    return lambda x: model(x).main


def predict(forward: Forward, image: torch.Tensor, size, device: torch.device,
            options: EvalConfig = EvalConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and normalised entropy (H×W, on the CPU) of one 3×h×w image; the class scores are
    up-sampled bilinearly to ``size`` first, as in the evaluation protocol (``options``)."""
    scores, _ = class_scores(lambda x: forward(x).float(), image[None].to(device), size, options)
    prob = scores if options.flip else scores.softmax(1)   # flip averaging already gives probabilities
    return prob.argmax(1)[0].cpu(), entropy_map(prob)[0].cpu()


def overlay_panels(image: torch.Tensor, pred: np.ndarray, entropy: np.ndarray, label: np.ndarray | None,
                   colours: np.ndarray, alpha: float = 0.5) -> list[np.ndarray]:
    """Image (a dataset item's float RGB 0-255), prediction blended over it (``alpha`` = 1: plain class
    colours), entropy map, ground truth: uint8 H×W×3 each, at the input size."""
    from matplotlib import colormaps  # imported only when a picture is drawn

    rgb = np.clip(image.numpy().transpose(1, 2, 0), 0, 255).astype(np.uint8)
    size = (rgb.shape[1], rgb.shape[0])
    shrink = lambda ids: np.asarray(Image.fromarray(ids.astype(np.uint8)).resize(size, Image.NEAREST))
    heat = np.asarray(Image.fromarray(entropy.astype(np.float32)).resize(size, Image.BILINEAR))
    viridis = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    panels = [rgb, ((1 - alpha) * rgb + alpha * colours[shrink(pred)]).astype(np.uint8),
              viridis[np.clip(heat * 255, 0, 255).astype(np.uint8)]]
    if label is not None:
        panels.append(colours[shrink(label)])   # ignored pixels (255) are black
    return panels


def colour_panels(model, items: list[dict], colours: np.ndarray, device: torch.device) -> list[list[np.ndarray]]:
    """[image, prediction, entropy map, ground truth] of each item as uint8 H×W×3 pictures (plain class colours)."""
    out = []
    for item in items:
        pred, entropy = predict(main_logits(model), item["image"], item["label"].shape, device)
        out.append(overlay_panels(item["image"], pred.numpy(), entropy.numpy(), item["label"].numpy(), colours,
                                  alpha=1.0))
    return out
