"""Per-image confusion matrices saved with every evaluation, and the optional source-val score."""

import numpy as np
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from udabench.config import load_suite
from udabench.engine.runner import run_suite
from udabench.metrics import per_image_confusion


def test_per_image_confusion_equals_one_matrix_per_image():
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (3, 7, 9), generator=g)
    label = torch.randint(0, 6, (3, 7, 9), generator=g)  # 5 = out of range: not counted
    label[0, :2] = 255
    per_image = per_image_confusion(pred, label, 5)
    assert per_image.shape == (3, 5, 5)
    for i in range(3):  # independent reference: scikit-learn on the counted pixels of image i
        keep = label[i] < 5
        expected = sk_confusion_matrix(label[i][keep], pred[i][keep], labels=list(range(5)))
        assert per_image[i].tolist() == expected.tolist()


def test_every_evaluation_writes_per_image_matrices_that_sum_to_the_row(write_suite, tmp_path):
    outcome = run_suite(load_suite(write_suite()), tmp_path / "res", methods=["source_only"])[0]
    rundir = outcome.spec.rundir
    for row in rundir.rows():
        saved = np.load(rundir.path / row["eval_file"])
        assert saved["cm"].shape == (4, 19, 19)  # 4 Cityscapes val images of the fixture
        assert sorted(saved["names"]) == sorted(set(saved["names"]))
        assert saved["cm"].sum(0).tolist() == row["confusion"]
        assert "source_val_miou" not in row


def test_source_val_is_scored_when_the_suite_names_one(write_suite, tmp_path):
    def add_source_val(suite):
        suite["data"]["source_val"] = {**suite["data"]["source"], "limit": 3}

    rows = run_suite(load_suite(write_suite(add_source_val)), tmp_path / "res",
                     methods=["source_only"])[0].spec.rundir.rows()
    assert all(0 <= r["source_val_miou"] <= 100 for r in rows)
