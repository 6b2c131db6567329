"""Shared fixtures: tiny datasets written in the exact GTA5 / Cityscapes on-disk formats, tiny suites
(the writers are in tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from helpers import tiny_suite_dict, write_cityscapes, write_gta5

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    return {"gta5": write_gta5(base / "GTA5", 6),
            "cityscapes": write_cityscapes(base / "Cityscapes", {"train": 6, "val": 4})}


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
