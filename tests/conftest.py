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


SLOW_PLUGIN = '''
"""Test plugin: source cross-entropy, a pause per step (so other processes can act mid-run) and an RNG draw.

``$TEST_SLOW_SIGNAL`` = "STEP:SIGNUM" makes the run send itself that signal during that step."""
import os
import time

import torch

from udabench import Method, register


@register
class Slow(Method):
    name = "test_slow"
    paper = "test"
    description = "source CE, {pause} s per step, one torch.rand draw per step"
    uses_target = False

    def train_step(self, source, target, step):
        time.sleep({pause})
        at = os.environ.get("TEST_SLOW_SIGNAL", "").split(":")
        if at[0] == str(step):
            os.kill(os.getpid(), int(at[1]))   # arrives mid-step: the step must still complete
        logs = self.ctx.supervised_step(source)
        return {{**logs, "draw": float(torch.rand(()))}}   # resumed runs must restore the generator
'''


@pytest.fixture(scope="session")
def slow_plugin(tmp_path_factory) -> Path:
    """A methods folder with ``test_slow`` (one file for every test: a method name is registered once)."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "test_slow.py").write_text(SLOW_PLUGIN.format(pause=0.2))
    return folder


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory) -> Path:
    """A UDABENCH_CACHE holding the embedded toy suite's generated data (about a minute, once per session)."""
    from udabench.config import load_suite
    from udabench.data.synthetic import ensure_generated

    cache = tmp_path_factory.mktemp("toy_cache")
    suite = load_suite(Path(__file__).resolve().parent.parent / "suites" / "toy_sim2real.yaml")
    ensure_generated(suite.synthetic, cache / "synthetic")   # where the readers look under $UDABENCH_CACHE
    return cache


@pytest.fixture
def narrow_deeplab(monkeypatch):
    """Backbone ``deeplab_resnet101`` built narrow and shallow (same names and strides) for fast tests."""
    from functools import partial

    from reference_nets import NARROW

    from udabench.models import OWN_BACKBONES, DeepLabResNet

    monkeypatch.setitem(OWN_BACKBONES, "deeplab_resnet101", partial(DeepLabResNet, **NARROW))
    return NARROW
