"""Training batches cross from the workers to a CUDA device as uint8 and reach the step exactly as DataLoader's
float32/int64."""

import torch
from helpers import write_cityscapes, write_gta5
from torch.utils.data import default_collate

from udabench.config import DomainAugment, Jitter
from udabench.data import get_dataset
from udabench.engine.augment import Augmented
from udabench.engine.handover import narrow_collate, to_device

AUGMENT = DomainAugment(jitter=Jitter(0.4, 0.4, 0.4, 0.1), scale=(0.7, 1.3), crop=(48, 32), flip=0.5, blur=0.5)


def items(tmp_path):
    """Decoded GTA5 and Cityscapes items (labels with the ignore id), as read and augmented, one with a
    pseudo-label map."""
    gta5 = get_dataset("gta5", write_gta5(tmp_path / "GTA5", 4), "all", size=(64, 32), prepared=False)
    city = get_dataset("cityscapes", write_cityscapes(tmp_path / "Cityscapes", {"train": 4}), "train",
                       size=(64, 32), prepared=False)
    out = [gta5[i] for i in range(4)] + [city[i] for i in range(4)]
    out += [Augmented(gta5, AUGMENT, seed=3)[(i, 10 + i)] for i in range(4)]
    out.append({**city[0], "pseudo_label": torch.where(city[0]["label"] == 255, 255, 18 - city[0]["label"])})
    return out


def test_a_uint8_handover_gives_the_step_the_default_batch_bit_for_bit(tmp_path):
    found = items(tmp_path)
    assert any((item["label"] == 255).any() for item in found)   # the ignore id crosses too
    groups = [found[0:4], found[4:8], found[8:12], found[12:]]
    for group in groups:
        expected, narrow = default_collate(group), narrow_collate(group)
        assert narrow["image"].dtype == narrow["label"].dtype == torch.uint8
        assert narrow["image"].nbytes * 4 == expected["image"].nbytes
        got = to_device(narrow, torch.device("cpu"))
        assert got.keys() == expected.keys() and got["name"] == expected["name"]
        for key in ("image", "label", "pseudo_label"):
            if key in expected:
                assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key


def test_items_are_integer_valued_so_uint8_is_exact(tmp_path):
    """The premise of the hand-over (engine/handover.py): every image a reader or the augmentation makes is
    integer-valued in 0-255, every label map below 256."""
    for item in items(tmp_path):
        image = item["image"]
        assert image.dtype == torch.float32 and torch.equal(image, image.round())
        assert image.min() >= 0 and image.max() <= 255
        assert item["label"].min() >= 0 and item["label"].max() <= 255


def test_training_loaders_hand_over_uint8_to_cuda_only():
    """On a CPU the widening would run in the main process instead of the parallel workers (no copy saved)."""
    from udabench.engine.handover import collate_for

    assert collate_for(torch.device("cuda")) is narrow_collate
    assert collate_for(torch.device("cpu")) is None
