import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from udabench.metrics import confusion_matrix, mean_iou, per_class_iou


def test_confusion_matrix_matches_sklearn_with_ignored_pixels():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 19, size=(3, 40, 50))
    label[rng.random(label.shape) < 0.2] = 255
    pred = rng.integers(0, 19, size=label.shape)
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label), 19)
    keep = label != 255
    expected = sk_confusion_matrix(label[keep], pred[keep], labels=list(range(19)))
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_out_of_range_labels_are_not_counted():
    label = torch.tensor([0, 1, 7, 255, -1])
    pred = torch.tensor([0, 1, 1, 1, 1])
    cm = confusion_matrix(pred, label, 3)
    assert cm.sum() == 2 and cm[0, 0] == 1 and cm[1, 1] == 1


def test_iou_golden_values():
    # rows = ground truth: class 0: 3 right, 1 predicted as 1; class 1: 2 right; class 2 never occurs
    cm = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    iou = per_class_iou(cm)
    assert iou[0].item() == pytest.approx(3 / 4)
    assert iou[1].item() == pytest.approx(2 / 3)
    assert torch.isnan(iou[2])
    assert mean_iou(cm) == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert mean_iou(cm, [1]) == pytest.approx(2 / 3)


def test_class_predicted_but_absent_counts_as_zero():
    cm = torch.tensor([[1, 1], [0, 0]])  # class 1 predicted once, never in the label
    assert per_class_iou(cm)[1].item() == 0.0
    assert mean_iou(cm) == pytest.approx((0.5 + 0.0) / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), 2)


def test_confusion_matrix_speed(benchmark):
    """Hot path: one full-resolution Cityscapes label map (1024×2048)."""
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 19, (1, 1024, 2048), generator=g)
    pred = torch.randint(0, 19, (1, 1024, 2048), generator=g)
    label[:, :100] = 255                                     # ignored pixels are left out
    cm = benchmark(confusion_matrix, pred, label, 19)
    keep = label != 255
    pairs, counts = np.unique(np.stack([label[keep].numpy(), pred[keep].numpy()]), axis=1, return_counts=True)
    expected = np.zeros((19, 19), dtype=np.int64)
    expected[pairs[0], pairs[1]] = counts                    # an independent count: unique (label, pred) pairs
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_per_image_confusion_speed(benchmark):
    """Hot path of every evaluation: a batch of 4 full-resolution maps, one matrix per image."""
    from udabench.metrics import per_image_confusion

    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 20, (4, 1024, 2048), generator=g)
    label[label == 19] = 255
    pred = torch.randint(0, 19, (4, 1024, 2048), generator=g)
    cms = benchmark(per_image_confusion, pred, label, 19)
    for i in range(4):
        assert torch.equal(cms[i], confusion_matrix(pred[i], label[i], 19))
