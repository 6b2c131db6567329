"""Augmentation and class-balanced sampling: pure functions of (seed, position), whatever the loader workers."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from udabench.config import DomainAugment, Jitter
from udabench.data import get_dataset
from udabench.data.base import image_tensor, rgb_of
from udabench.engine import augment as augment_module
from udabench.engine import balanced
from udabench.engine.augment import Augmented, augment
from udabench.engine.balanced import (
    SUB_EPOCH,
    ClassBalancedSampler,
    class_histogram,
    class_pixels,
)
from udabench.engine.sampling import ResumableSampler

EVERYTHING = DomainAugment(jitter=Jitter(0.5, 0.5, 0.5, 0.2), scale=(0.8, 1.2), crop=(48, 24), flip=0.5, blur=0.5)


@pytest.fixture(scope="module")
def source(tiny_data):
    return get_dataset("gta5", tiny_data["gta5"], "all", size=(64, 32))


def test_an_augmented_sample_depends_on_seed_and_position_only_whatever_the_workers(source):
    aug = Augmented(source, EVERYTHING, seed=7)
    again, other = aug[(1, 5)], aug[(1, 6)]
    first = aug[(1, 5)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    assert first["image"].shape == (3, 24, 48) and not torch.equal(first["image"], other["image"])

    def batches(workers):
        loader = DataLoader(aug, batch_size=2, sampler=ResumableSampler(len(source), 7, start=3),
                            num_workers=workers, drop_last=True)
        return list(islice(iter(loader), 3))

    for a, b in zip(batches(0), batches(2)):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_crop_and_flip_move_image_and_labels_together_and_pad_with_ignore():
    rng = np.random.default_rng(0)
    label = np.kron(rng.integers(0, 19, (5, 10)), np.ones((4, 4), dtype=np.int64))       # 20×40
    rgb = np.stack([label * 10, label * 3, np.full_like(label, 7)], -1).astype(np.uint8)  # colour encodes label
    item = {"image": image_tensor(rgb), "label": torch.from_numpy(label), "pseudo_label": torch.from_numpy(label)}
    for seed in range(6):
        out = augment(item, DomainAugment(crop=(48, 24), flip=0.5), np.random.default_rng(seed))
        image, lab = rgb_of(out["image"]).astype(np.int64), out["label"].numpy()
        assert image.shape == (24, 48, 3) and lab.shape == (24, 48) and torch.equal(out["label"], out["pseudo_label"])
        valid = lab != 255
        assert valid.sum() == 20 * 40                                    # the whole image, padded around
        assert (image[..., 0][valid] == lab[valid] * 10).all() and (image[~valid] == 0).all()
    flips = [torch.equal(augment(item, DomainAugment(flip=0.5), np.random.default_rng(s))["label"], item["label"])
             for s in range(20)]
    assert 0 < sum(flips) < 20                                           # flipped about half the time
    out = augment(item, DomainAugment(scale=(0.5, 1.5)), np.random.default_rng(3))
    f = out["label"].shape[1] / 40
    assert 0.5 <= f <= 1.5 and out["image"].shape[-2:] == out["label"].shape
    assert set(out["label"].unique().tolist()) <= set(np.unique(label).tolist())   # nearest: no new label values


def mmseg_crop_box(seg, cat_max_ratio, get_crop_bbox, ignore_index=255):
    """The box mmseg's ``RandomCrop.__call__`` keeps (MIC ``seg/mmseg/datasets/pipelines/transforms.py:548-559``), its
    ``get_crop_bbox`` given, boxes as (x1, y1, x2, y2)."""
    crop_bbox = get_crop_bbox()
    if cat_max_ratio < 1.:
        for _ in range(10):
            x1, y1, x2, y2 = crop_bbox
            labels, cnt = np.unique(seg[y1:y2, x1:x2], return_counts=True)
            cnt = cnt[labels != ignore_index]
            if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < cat_max_ratio:
                break
            crop_bbox = get_crop_bbox()
    return crop_bbox


@pytest.mark.parametrize("cat_max_ratio", [0.75, 0.5, 1.0])
def test_a_crop_dominated_by_one_class_is_drawn_again_as_mmseg_does(monkeypatch, cat_max_ratio):
    rng = np.random.default_rng(1)
    label = np.zeros((32, 64), dtype=np.int64)
    label[:, 40:] = 1                                   # mostly class 0: most 16×16 crops hold it alone
    label[20:, 50:] = 255
    label[:4, :8] = 2
    item = {"image": image_tensor(np.zeros((32, 64, 3), np.uint8)), "label": torch.from_numpy(label)}
    for trial in range(40):
        boxes = [(int(x), int(y), int(x) + 16, int(y) + 16)
                 for x, y in zip(rng.integers(0, 49, 11), rng.integers(0, 17, 11))]
        queue = list(boxes)
        monkeypatch.setattr(augment_module, "_crop_box", lambda image, size, rng: queue.pop(0))
        out = augment(item, DomainAugment(crop=(16, 16), cat_max_ratio=cat_max_ratio), np.random.default_rng(0))
        reference = list(boxes)
        x1, y1, x2, y2 = mmseg_crop_box(label, cat_max_ratio, lambda: reference.pop(0))
        assert torch.equal(out["label"], torch.from_numpy(label[y1:y2, x1:x2]))
        assert len(queue) == len(reference)   # as many boxes drawn


def test_the_crop_redraw_makes_crops_of_one_class_rare():
    label = np.zeros((32, 64), dtype=np.int64)
    label[:, 48:] = 1
    item = {"image": image_tensor(np.zeros((32, 64, 3), np.uint8)), "label": torch.from_numpy(label)}

    def dominated(ratio):   # share of crops where one class covers 75 % or more (one draw: 41 of 49 offsets)
        outs = [augment(item, DomainAugment(crop=(16, 16), cat_max_ratio=ratio), np.random.default_rng(s))["label"]
                for s in range(200)]
        return np.mean([torch.bincount(o.flatten()).max() >= 0.75 * 256 for o in outs])
    assert dominated(1.0) > 0.7 and dominated(0.75) < 0.3   # 11 draws: (41/49)^11 = 0.14


def test_photometric_changes_leave_the_labels_alone_and_stay_in_their_ranges(source):
    item = source[0]
    for seed in range(4):
        rng = np.random.default_rng(seed)
        out = augment(item, DomainAugment(jitter=Jitter(brightness=0.5)), rng)
        ratio = rgb_of(out["image"]).astype(float).mean() / rgb_of(item["image"]).astype(float).mean()
        assert 0.5 - 0.02 <= ratio <= 1.5 + 0.02 and torch.equal(out["label"], item["label"])
    blurred = augment(item, DomainAugment(blur=1.0, blur_radius=3.0), np.random.default_rng(1))
    variation = [np.abs(np.diff(rgb_of(x["image"]).astype(float), axis=1)).mean() for x in (item, blurred)]
    assert variation[1] < variation[0] and torch.equal(blurred["label"], item["label"])


def presence_matrix():
    n = 200
    presence = np.zeros((n, 3), dtype=bool)
    presence[:, 0] = True          # road: in every image
    presence[:10, 1] = True        # a rare class: 5% of the images
    presence[::2, 2] = True        # a common one: 50%
    return presence


def test_class_balanced_draws_favour_images_of_rare_classes():
    presence = presence_matrix()
    draws = [i for i, _ in islice(iter(ClassBalancedSampler(presence, seed=3)), SUB_EPOCH)]
    assert presence[draws, 1].mean() > 0.25        # uniform sampling: 0.05
    assert set(draws) <= set(range(200))


def test_class_balanced_stream_is_a_function_of_seed_and_position():
    presence = presence_matrix()
    whole = list(islice(iter(ClassBalancedSampler(presence, seed=5)), 4000))
    assert [p for _, p in whole] == list(range(4000))
    assert list(islice(iter(ClassBalancedSampler(presence, seed=5, start=2500)), 1500)) == whole[2500:]
    ranks = [list(islice(iter(ClassBalancedSampler(presence, 5, start=600, rank=r, world_size=2)), 500))
             for r in range(2)]
    assert sorted(ranks[0] + ranks[1], key=lambda key: key[1]) == whole[1200:2200]
    assert list(islice(iter(ClassBalancedSampler(presence, seed=6)), 50)) != whole[:50]


def test_the_class_index_counts_each_images_pixels_of_each_class_and_is_cached(source, tiny_data, tmp_path,
                                                                                 monkeypatch):
    """One index of the source labels: its rows > 0 the sampler's class presence, its sum the class-ratio prior's
    histogram."""
    from udabench.config import DatasetConfig
    from udabench.data.base import read_label_ids

    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path))
    entry = DatasetConfig(dataset="gta5", root=str(tiny_data["gta5"]), split="all")
    pixels = class_pixels(source, entry, "cityscapes19")
    lut = source.decoder.lut
    ids = [lut[read_label_ids(s.label)] for s in source.samples]
    expected = np.stack([[(train_ids == c).sum() for c in range(19)] for train_ids in ids])
    assert pixels.dtype == np.int64 and np.array_equal(pixels, expected)
    histogram = class_histogram(pixels).numpy()
    assert histogram == pytest.approx(expected.sum(0) / expected.sum(), rel=1e-6) and histogram.sum() == pytest.approx(1)

    def no_recompute(*args, **kw):
        raise AssertionError("the cached index must be read")

    monkeypatch.setattr(balanced, "map_files", no_recompute)
    assert np.array_equal(class_pixels(source, entry, "cityscapes19"), pixels)
    assert len(list((tmp_path / "class_pixels").glob("gta5-all-cityscapes19-*.npy"))) == 1
