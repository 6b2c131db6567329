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
from tqdm import tqdm

from ..classes import CITYSCAPES_LABEL_IDS, ClassSet, get_class_set
from ..config import DatasetConfig, EvalConfig, Suite
from ..data import get_dataset
from ..engine.rundir import RunDir
from ..losses import entropy_map
from ..metrics import confusion_matrix


def label_id_table(class_set: ClassSet) -> np.ndarray:
    """Train id of ``class_set`` -> Cityscapes label id (the benchmark-server encoding)."""
    return np.array([CITYSCAPES_LABEL_IDS[c] for c in class_set.cityscapes19_ids], dtype=np.uint8)


def colour_table(class_set: ClassSet) -> np.ndarray:
    """256×3 palette: class colours by train id, ignored pixels black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: class_set.num_classes] = class_set.colors
    return table


def load_run(run: str | Path, device: torch.device) -> tuple[Suite, torch.nn.Module]:
    """The suite and the final segmentation model of a finished run directory."""
    rundir = RunDir.open(run)
    return rundir.suite(), rundir.final_model(device)


def native_split(suite: Suite, ds: DatasetConfig, limit: int | None = None):
    """One of the suite's datasets at its network input size with labels at native resolution (as evaluated)."""
    return get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes, resize_label=False,
                       limit=limit or ds.limit, synthetic=suite.synthetic)


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
    for i in tqdm(range(len(dataset)), desc="export", unit="img", leave=False, disable=None):
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


def predict(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, size, device: torch.device,
            options: EvalConfig = EvalConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and normalised entropy (H×W, on the CPU) of one 3×h×w image; the class scores are
    up-sampled bilinearly to ``size`` first, as in the evaluation protocol."""
    from ..engine.evaluate import class_scores

    scores, _ = class_scores(lambda x: forward(x).float(), image[None].to(device), size, options)
    prob = scores if options.flip else scores.softmax(1)   # flip averaging already gives probabilities
    return prob.argmax(1)[0].cpu(), entropy_map(prob)[0].cpu()


def overlay_panels(image: torch.Tensor, pred: np.ndarray, entropy: np.ndarray, label: np.ndarray | None,
                   colours: np.ndarray, alpha: float = 0.5) -> list[np.ndarray]:
    """Image (a dataset item's float RGB 0-255), prediction blended over it (``alpha`` = 1: plain class
    colours), entropy map, ground truth: uint8 H×W×3 each, at the input size."""
    from matplotlib import colormaps

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


def export_run(run: str | Path, device: torch.device, out: str | Path | None = None, limit: int | None = None,
               overlays: bool = True) -> Path:
    """Export a finished run's predictions on its eval split to ``out`` (default ``<run>/export``)."""
    from ..engine.evaluate import scores

    suite, model = load_run(run, device)
    dataset = native_split(suite, suite.data.eval, limit)
    out = Path(out) if out else Path(run) / "export"
    cm = export_predictions(lambda x: model(x).main, dataset, get_class_set(suite.classes), out, device, overlays,
                            suite.eval)
    result = {k: v for k, v in scores(suite, cm, float("nan")).items() if k != "target_entropy"}
    (out / "scores.json").write_text(json.dumps(result, indent=1))
    return out
