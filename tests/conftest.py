"""Shared fixtures: tiny datasets written in the exact GTA5 / Cityscapes on-disk formats, tiny suites."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from udabench.classes import CITYSCAPES_LABEL_IDS, CLASS_SETS

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Ids that occur in real label files but are not evaluated (unlabeled, ego vehicle, ground, ...).
NON_EVAL_IDS = (0, 1, 6, 9)


def random_label_ids(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Blocky label maps of Cityscapes label ids, with some non-evaluated ids mixed in."""
    ids = np.array(CITYSCAPES_LABEL_IDS + NON_EVAL_IDS, dtype=np.uint8)
    coarse = rng.choice(ids, size=(h // 4 + 1, w // 4 + 1))
    return np.kron(coarse, np.ones((4, 4), dtype=np.uint8))[:h, :w]


def image_for(label_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.float32)
    for lid, color in zip(CITYSCAPES_LABEL_IDS, CLASS_SETS["cityscapes19"].colors):
        palette[lid] = color
    image = palette[label_ids] + rng.normal(0, 10, label_ids.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8)


def palette_png(label_ids: np.ndarray) -> Image.Image:
    img = Image.fromarray(label_ids, mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    for lid, color in zip(CITYSCAPES_LABEL_IDS, CLASS_SETS["cityscapes19"].colors):
        palette[lid] = color
    img.putpalette(palette.reshape(-1).tolist())
    return img


def write_gta5(root: Path, n: int, h: int = 40, w: int = 80, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(1, n + 1):
        ids = random_label_ids(rng, h, w)
        Image.fromarray(image_for(ids, rng)).save(root / "images" / f"{i:05d}.png")
        palette_png(ids).save(root / "labels" / f"{i:05d}.png")
    return root


def write_cityscapes(root: Path, splits: dict[str, int], h: int = 40, w: int = 80, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        for i in range(n):
            city = f"city{i % 2}"
            stem = f"{city}_{i:06d}_000019"
            img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            ids = random_label_ids(rng, h, w)
            Image.fromarray(image_for(ids, rng)).save(img_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    return {"gta5": write_gta5(base / "GTA5", 6),
            "cityscapes": write_cityscapes(base / "Cityscapes", {"train": 6, "val": 4})}


def tiny_suite_dict(data: dict[str, Path], **train) -> dict:
    return {
        "name": "tiny",
        "description": "test suite",
        "data": {
            "source": {"dataset": "gta5", "root": str(data["gta5"]), "split": "all", "size": [64, 32]},
            "target": {"dataset": "cityscapes", "root": str(data["cityscapes"]), "split": "train", "size": [64, 32]},
            "eval": {"dataset": "cityscapes", "root": str(data["cityscapes"]), "split": "val", "size": [64, 32]},
            "eval_batch_size": 2,
        },
        "model": {"backbone": "resnet10t", "pretrained": "none", "bn_mode": "train", "multi_level": True},
        "train": {"iterations": 4, "batch_size": 2, "lr": 0.01, "eval_every": 2, "checkpoint_every": 2,
                  "log_every": 2, **train},
        "methods": {"source_only": {}},
        "oracle": True,
        "seeds": [0],
    }


@pytest.fixture
def write_suite(tmp_path, tiny_data):
    """Write a tiny suite YAML (optionally modified) and return its path."""

    def _write(modify=None, **train) -> Path:
        suite = tiny_suite_dict(tiny_data, **train)
        if modify:
            modify(suite)
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump(suite))
        return path

    return _write


@pytest.fixture
def narrow_deeplab(monkeypatch):
    """Backbone ``deeplab_resnet101`` built narrow and shallow (same names and strides) for fast tests."""
    from functools import partial

    from reference_nets import NARROW

    from udabench.models import OWN_BACKBONES, DeepLabResNet

    monkeypatch.setitem(OWN_BACKBONES, "deeplab_resnet101", partial(DeepLabResNet, **NARROW))
    return NARROW
