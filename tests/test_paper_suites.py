"""The paper suites on fixtures in the official layouts: data check, the network they build, a --quick run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import write_cityscapes, write_gta5, write_nthu, write_synthia
from reference_nets import OfficialDeepLab, deeplab_init_file

from udabench.classes import get_class_set
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.rows import protocol
from udabench.models import build_model

SUITES = Path(__file__).parent.parent / "suites"
PAPER_SUITES = ["gta5_cityscapes", "synthia_cityscapes", "cityscapes_crosscity"]
INIT_FILES = {"gta5_cityscapes": "DeepLab_resnet_pretrained_imagenet.pth",          # ADVENT's release
              "synthia_cityscapes": "DeepLab_resnet_pretrained_imagenet.pth",
              "cityscapes_crosscity": "DeepLab_resnet_pretrained_init-f81d91e8.pth"}  # MaxSquare's (AdaptSegNet's)


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory) -> Path:
    """$UDABENCH_DATA with every dataset of the paper suites, and full-size init files in the DeepLab layout
    (random weights: their names and shapes are what is checked)."""
    root = tmp_path_factory.mktemp("UDABENCH_DATA")
    write_gta5(root / "GTA5", 4, h=36, w=64)
    write_synthia(root / "SYNTHIA", [0, 1, 2, 3], h=38, w=64)
    write_cityscapes(root / "Cityscapes", {"train": 4, "val": 2}, h=32, w=64)
    write_nthu(root / "NTHU", "Rome", n_train=4, n_test=2, h=32, w=64)
    (root / "weights").mkdir()
    init = deeplab_init_file(OfficialDeepLab(), root / "weights" / INIT_FILES["gta5_cityscapes"])
    shutil.copy(init, root / "weights" / INIT_FILES["cityscapes_crosscity"])
    return root


@pytest.mark.parametrize("name", PAPER_SUITES)
def test_paper_suite_passes_data_check_and_builds_the_papers_network(name, paper_data, monkeypatch, capsys):
    monkeypatch.setenv("UDABENCH_DATA", str(paper_data))
    assert main(["data", "check", str(SUITES / f"{name}.yaml")]) == 0
    assert "all datasets usable" in capsys.readouterr().out
    suite = load_suite(SUITES / f"{name}.yaml")
    assert suite.model.backbone == "deeplab_resnet101" and suite.model.pretrained.endswith(INIT_FILES[name])
    model = build_model(suite.model, get_class_set(suite.classes).num_classes)   # the official init file, as it is
    assert model.input_norm.name == "caffe_bgr" and protocol(suite, 0)["input_norm"] == "caffe_bgr"
    assert suite.model.bn_mode == "frozen"                      # one BN mode for every method (docs/protocol.md)


def test_list_backbones_shows_the_paper_configuration_first(capsys):
    assert main(["list", "backbones"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("deeplab_resnet101 ") and "paper configuration" in first


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_SUITES)
def test_paper_suite_runs_quick(name, paper_data, monkeypatch, tmp_path, capsys):
    """Every method of the suite for a few steps on the fixtures, with the full-size DeepLab ResNet-101."""
    monkeypatch.setenv("UDABENCH_DATA", str(paper_data))
    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path / "cache"))
    code = main(["run", str(SUITES / f"{name}.yaml"), "--quick", "--seeds", "0", "--results", str(tmp_path / "res")])
    assert code == 0, capsys.readouterr().err
