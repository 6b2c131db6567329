"""Predictions of a finished run on its eval split: Cityscapes-format label PNGs, overlays, entropy maps.

``labelIds/<name>.png`` holds Cityscapes *label ids* (train id -> label id) at the native label
resolution: the format of the Cityscapes benchmark server and of cityscapesscripts' evaluation.
``overlays/<name>.png`` shows, left to right, the image, the prediction over it, the normalised
prediction entropy (ADVENT Fig. 1 style) and the ground truth. ``scores.json`` holds the per-class
IoU of the exported predictions, computed with the evaluation options of the run (flip, ``align_corners``)
but always at the native label resolution, the benchmark server's, whatever ``eval.label_size``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..classes import ClassSet, colour_table, get_class_set, label_id_table
from ..config import EvalConfig
from ..engine.predict import main_logits, overlay_panels, predict
from ..metrics import confusion_matrix
from ..progress import progress_bar
from .runs import load_run, native_split


@torch.no_grad()
def export_predictions(forward: Callable[[torch.Tensor], torch.Tensor], dataset, class_set: ClassSet, out: Path,
                       device: torch.device, overlays: bool = True, options: EvalConfig = EvalConfig()) -> torch.Tensor:
    """Write one label-id PNG (and overlay) per item; return the confusion matrix of the predictions.

    ``forward`` maps a 1×3×h×w image to class scores; they are up-sampled bilinearly to the label
    (native resolution), as in the evaluation protocol (``options``: flip, ``align_corners``).
    """
    to_label_id, colours = label_id_table(class_set), colour_table(class_set)
    (out / "labelIds").mkdir(parents=True, exist_ok=True)
    if overlays:
        (out / "overlays").mkdir(exist_ok=True)
    cm = torch.zeros(class_set.num_classes, class_set.num_classes, dtype=torch.int64)
    for i in progress_bar(range(len(dataset)), "export", unit="img"):
        item = dataset[i]
        label = item.get("label")
        size = label.shape if label is not None else item["image"].shape[-2:]
        pred, entropy = predict(forward, item["image"], size, device, options)
        Image.fromarray(to_label_id[pred.numpy()]).save(out / "labelIds" / f"{item['name']}.png")
        if label is not None:
            cm += confusion_matrix(pred, label, class_set.num_classes)
        if overlays:
            panels = overlay_panels(item["image"], pred.numpy(), entropy.numpy(),
                                    None if label is None else label.numpy(), colours)
            Image.fromarray(np.concatenate(panels, axis=1)).save(out / "overlays" / f"{item['name']}.png")
    return cm


def export_run(run: str | Path, device: torch.device, out: str | Path | None = None, limit: int | None = None,
               overlays: bool = True) -> Path:
    """Export a finished run's predictions on its eval split to ``out`` (default ``<run>/export``)."""
    from ..engine.evaluate import scores

    suite, model = load_run(run, device)
    dataset = native_split(suite, suite.data.eval, limit)
    out = Path(out) if out else Path(run) / "export"
    cm = export_predictions(main_logits(model), dataset, get_class_set(suite.classes), out, device, overlays,
                            suite.eval)
    result = {k: v for k, v in scores(suite, cm, float("nan")).items() if k != "target_entropy"}
    (out / "scores.json").write_text(json.dumps(result, indent=1))
    return out
