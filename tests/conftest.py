"""Shared fixtures: tiny datasets written in the exact GTA5 / Cityscapes on-disk formats, tiny suites (the writers
are in tests/helpers.py), a signalling test plugin, the embedded suite's generated data; the ``gpu`` marker's skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from helpers import tiny_suite_dict, write_cityscapes, write_gta5

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` take the CUDA paths: where CUDA is not available they are skipped, saying so."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="marked gpu: needs CUDA, and torch.cuda.is_available() is False here")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


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


SIGNAL_PLUGIN = '''
"""Test plugin: source cross-entropy and one RNG draw per step (resumed runs must restore the generator).

``$TEST_SIGNAL_AT`` = "STEP:SIGNUM" makes the run send itself that signal during that step: it arrives mid-step,
with nothing to wait for. ``$TEST_STEP_PAUSE`` (seconds; unset: none) pauses every step, for the slow tests in
which another process acts mid-run."""
import os
import time

import torch

from udabench import Method, register


@register
class Signal(Method):
    name = "test_signal"
    paper = "test"
    description = "source CE, one torch.rand draw per step; a signal to itself at a chosen step"
    uses_target = False

    def train_step(self, source, target, step):
        if os.environ.get("TEST_STEP_PAUSE"):
            time.sleep(float(os.environ["TEST_STEP_PAUSE"]))
        at = os.environ.get("TEST_SIGNAL_AT", "").split(":")
        if at[0] == str(step):
            os.kill(os.getpid(), int(at[1]))   # arrives mid-step: the step must still complete
        logs = self.ctx.supervised_step(source)
        return {**logs, "draw": float(torch.rand(()))}
'''


@pytest.fixture(scope="session")
def signal_plugin(tmp_path_factory) -> Path:
    """A methods folder with ``test_signal`` (one file for every test: a method name is registered once)."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "test_signal.py").write_text(SIGNAL_PLUGIN)
    return folder


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory) -> Path:
    """A UDABENCH_CACHE holding the embedded toy suite's generated data (about a minute, once per session), for the
    slow tests that run the suite as it is."""
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
