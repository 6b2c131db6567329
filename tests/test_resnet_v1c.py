"""MIC's DeepLab-V2 trunk (suites/paper/mic/): mmcv's ResNetV1c-101 as udabench builds it (timm ``resnet101c`` at
output stride 8) has the layout of mmcv's own, and reads mmcv's ``resnet101_v1c`` file (layout ``mmcv_v1c``).

The expected layout is written here from mmcv/mmseg's ``resnet.py`` (MIC ``seg/mmseg/models/backbones/resnet.py``):
the deep stem of three 3×3 convolutions 32-32-64 (``:589-622``), bottlenecks with the stride in the 3×3 convolution
(``style='pytorch'``, ``:158-163``), 3/4/23/3 blocks of 64·2^i planes ×4, the 1×1 projection in each stage's first
block (``res_layer.py:44-66``); DeepLab's strides (1, 2, 1, 1) and dilations (1, 1, 2, 4) with ``contract_dilation``
(the first block of a dilated stage at half the dilation, ``res_layer.py:69-73``;
``configs/_base_/models/deeplabv2_r50-d8.py:12-22``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from udabench.config import load_suite
from udabench.models import build_model
from udabench.models.weights import MMCV_V1C, layouts_for

RECIPE = Path(__file__).resolve().parent.parent / "suites" / "paper" / "mic" / "gta5_dlv2.yaml"
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def mmcv_resnet_v1c(depth: int = 101) -> tuple[dict[str, tuple], dict[str, tuple[int, int]]]:
    """(parameter and buffer name -> shape, 3×3/projection convolution -> (stride, dilation)) of mmcv's
    ``ResNetV1c(depth, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)``."""
    shapes: dict[str, tuple] = {}
    geometry: dict[str, tuple[int, int]] = {}

    def bn(name, c):
        shapes.update({f"{name}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN})

    for i, (cin, cout) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64))):
        shapes[f"stem.{i}.weight"] = (cout, cin, 3, 3)
        bn(f"stem.{i + 1}", cout)
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    inplanes = 64
    for stage, (n, stride, dilation) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4))):
        planes = 64 * 2 ** stage
        for b in range(n):
            p = f"layer{stage + 1}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes if b == 0 else planes * 4, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            first = dilation // 2 if dilation > 1 else dilation
            geometry[f"{p}.conv2"] = (stride if b == 0 else 1, first if b == 0 else dilation)
            geometry[f"{p}.conv1"] = (1, 1)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
                geometry[f"{p}.downsample.0"] = (stride, 1)
        inplanes = planes * 4
    return shapes, geometry


def recipe_model(monkeypatch):
    monkeypatch.setenv("UDABENCH_DATA", "/data")
    suite = load_suite(RECIPE)
    return suite, build_model(replace(suite.model, pretrained="none"), suite.class_set.num_classes)


def test_the_mic_recipe_trunk_has_mmcv_resnet_v1c_layout_strides_and_dilations(monkeypatch):
    suite, model = recipe_model(monkeypatch)
    assert suite.model.backbone == "resnet101c" and layouts_for("resnet101c")[0] is MMCV_V1C
    shapes, geometry = mmcv_resnet_v1c(101)
    renamed = MMCV_V1C.convert({k: torch.empty(s) for k, s in shapes.items()}, {})
    own = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in renamed.items()} == own       # every name and shape, nothing more
    modules = dict(model.backbone.named_modules())
    for name, (stride, dilation) in geometry.items():
        conv = modules[name]
        assert (conv.stride, conv.dilation) == ((stride,) * 2, (dilation,) * 2), name
        assert conv.padding == ((dilation,) * 2 if conv.kernel_size == (3, 3) else (0, 0)), name
    stem = [modules[f"conv1.{i}"] for i in (0, 3, 6)]
    assert [c.stride for c in stem] == [(2, 2), (1, 1), (1, 1)] and all(c.padding == (1, 1) for c in stem)
    assert not modules["maxpool"].ceil_mode and modules["maxpool"].stride == 2
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 and m.weight.requires_grad for m in bns)      # mmcv BN, trained
    model.train()
    assert all(m.training for m in bns)                                           # norm_eval False
    # DLV2Head(dilations=(6, 12)): two summed 3x3 branches on layer4, zero biases, no auxiliary head
    assert [b.dilation for b in model.head.branches] == [(6, 6), (12, 12)] and model.aux_head is None
    assert all(b.in_channels == 2048 and not b.bias.any() for b in model.head.branches)
    assert model.input_norm.name == "imagenet"
    # mmseg's img_norm_cfg (uda_gta_to_cityscapes_512x512.py:10-11)
    assert torch.allclose(model.input_norm.mean.flatten(), torch.tensor([123.675, 116.28, 103.53]))
    assert torch.allclose(model.input_norm.std.flatten(), torch.tensor([58.395, 57.12, 57.375]))
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 64, 64))
    assert out.main.shape == (1, 19, 8, 8) and out.aux is None                   # output stride 8


def test_mmcv_resnet101_v1c_file_is_read_into_resnet101c(monkeypatch, tmp_path):
    """A file with mmcv's names (fp16 placeholders: the loader checks names and shapes) lands tensor by tensor."""
    shapes, _ = mmcv_resnet_v1c(101)
    state = {k: torch.full(s, float(i % 7), dtype=torch.float16) if s else torch.tensor(0)
             for i, (k, s) in enumerate(shapes.items())}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048, dtype=torch.float16), torch.zeros(1000)
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "resnet101_v1c-e67eebb6.pth")
    monkeypatch.setenv("UDABENCH_DATA", str(tmp_path))
    suite = load_suite(RECIPE, [f"model.pretrained={tmp_path / 'resnet101_v1c-e67eebb6.pth'}"])
    model = build_model(suite.model, suite.class_set.num_classes)
    own = model.backbone.state_dict()
    for mmcv, timm_name in (("stem.0.weight", "conv1.0.weight"), ("stem.7.running_var", "bn1.running_var"),
                            ("stem.4.bias", "conv1.4.bias"), ("layer3.22.conv2.weight", "layer3.22.conv2.weight"),
                            ("layer4.0.downsample.1.weight", "layer4.0.downsample.1.weight")):
        assert torch.equal(own[timm_name], state[mmcv].float()), mmcv
