"""Cityscapes-format export: label-id PNGs that cityscapesscripts scores exactly as udabench does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import (
    CITYSCAPES_TO_13,
    CITYSCAPES_TO_16,
    CITYSCAPES_TO_19,
    write_cityscapes,
)
from PIL import Image

from udabench.analysis.export import export_predictions
from udabench.classes import CLASS_SETS, get_class_set, label_id_table
from udabench.cli import main
from udabench.data import get_dataset
from udabench.metrics import per_class_iou

EVAL_IDS = sorted(CITYSCAPES_TO_19)   # the label ids cityscapesscripts evaluates (ignoreInEval false)


@pytest.mark.parametrize("class_set, table", [("cityscapes19", CITYSCAPES_TO_19), ("synthia16", CITYSCAPES_TO_16),
                                              ("crosscity13", CITYSCAPES_TO_13)])
def test_train_ids_map_back_to_cityscapes_label_ids(class_set, table):
    assert label_id_table(get_class_set(class_set)).tolist() == sorted(table, key=table.get)


def colour_classifier(class_set):
    """Logits from the distance of each pixel to the class colours: an imperfect but sensible predictor."""
    colours = torch.tensor(class_set.colors, dtype=torch.float32)[:, :, None, None]

    def forward(image: torch.Tensor) -> torch.Tensor:   # items are RGB 0-255
        return -((image[0][None] - colours) ** 2).sum(1)[None] / 500.0

    return forward


@pytest.fixture
def exported(tmp_path):
    root = write_cityscapes(tmp_path / "Cityscapes", {"val": 4}, h=48, w=96, seed=7)
    classes = CLASS_SETS["cityscapes19"]
    dataset = get_dataset("cityscapes", root, "val", size=(48, 24), resize_label=False)  # up-sampled ×2
    cm = export_predictions(colour_classifier(classes), dataset, classes, tmp_path / "out", torch.device("cpu"))
    iou = dict(zip(classes.names, per_class_iou(cm).tolist()))
    assert 0 < np.nanmin(list(iou.values())) < np.nanmax(list(iou.values())) < 1   # a non-trivial case
    return dataset, tmp_path / "out" / "labelIds", iou


def test_iou_parity_with_cityscapesscripts(exported, monkeypatch):
    ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    dataset, predictions, ours = exported
    for key, value in {"evalInstLevelScore": False, "JSONOutput": False, "quiet": True,
                       "predictionPath": str(predictions), "predictionWalk": None}.items():
        monkeypatch.setattr(ev.args, key, value)
    gts = [str(s.label) for s in dataset.samples]
    preds = [ev.getPrediction(ev.args, gt) for gt in gts]     # found by the benchmark's own naming rule
    theirs = ev.evaluateImgLists(preds, gts, ev.args)["classScores"]
    for name, value in ours.items():
        assert theirs[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name


def test_iou_parity_with_an_independent_computation_on_the_files(exported):
    dataset, predictions, ours = exported
    pred = np.stack([np.asarray(Image.open(predictions / f"{s.name}.png")) for s in dataset.samples])
    gt = np.stack([np.asarray(Image.open(s.label)) for s in dataset.samples])
    evaluated = np.isin(gt, EVAL_IDS)                       # other ground-truth ids count nowhere
    for label_id, name in zip(EVAL_IDS, CLASS_SETS["cityscapes19"].names):
        tp = np.sum((gt == label_id) & (pred == label_id))
        fn = np.sum((gt == label_id) & (pred != label_id))
        fp = np.sum(evaluated & (gt != label_id) & (pred == label_id))
        expected = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
        assert ours[name] == pytest.approx(expected, abs=1e-12, nan_ok=True), name


def test_viz_exports_a_finished_run_with_the_scores_of_its_last_evaluation(capsys, write_suite, tmp_path):
    suite = write_suite(iterations=1, eval_every=1, checkpoint_every=1)
    assert main(["run", str(suite), "--methods", "source_only", "--results", str(tmp_path / "r")]) == 0
    run = next((tmp_path / "r" / "tiny" / "source_only").iterdir())
    assert main(["viz", str(run)]) == 0
    export = run / "export"
    assert len(list((export / "labelIds").glob("*_leftImg8bit.png"))) == 4
    overlay = Image.open(next((export / "overlays").iterdir()))
    assert overlay.size == (4 * 64, 32)                    # image | prediction | entropy | ground truth
    exported = json.loads((export / "scores.json").read_text())["class_sets"]["cityscapes19"]["iou"]
    evaluated = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["class_sets"]["cityscapes19"]["iou"]
    assert exported == pytest.approx(evaluated, abs=1e-3, nan_ok=True)
    capsys.readouterr()
    assert main(["viz", str(tmp_path)]) == 2 and "not a run directory" in capsys.readouterr().err
