import re
from pathlib import Path

import pytest
import timm
import torch

from udabench.config import ModelConfig, load_suite
from udabench.data import get_class_set
from udabench.errors import ConfigError, UdabenchError
from udabench.models import ASPPClassifier, DeepLabV2, build_model


def tiny(**kw):
    return DeepLabV2("resnet10t", num_classes=5, **kw)


def test_output_shapes_at_stride_8():
    model = tiny(bn_mode="train")
    out = model(torch.randn(2, 3, 64, 96))
    assert out.main.shape == (2, 5, 8, 12)
    assert out.aux.shape == (2, 5, 8, 12)
    assert out.features.shape == (2, 512, 8, 12)


def test_single_level_has_no_aux_head():
    out = tiny(multi_level=False)(torch.randn(1, 3, 32, 32))
    assert out.aux is None


@pytest.mark.parametrize("dilations", [(6, 12, 18, 24), (6, 12)])
def test_every_aspp_branch_receives_gradient(dilations):
    head = ASPPClassifier(8, 3, dilations)
    assert [b.dilation[0] for b in head.branches] == list(dilations)
    head(torch.randn(1, 8, 30, 30)).sum().backward()
    for branch in head.branches:
        assert branch.weight.grad is not None and branch.weight.grad.abs().sum() > 0
        assert branch.bias is not None


def test_aspp_is_a_sum_of_branches_with_paper_init():
    head = ASPPClassifier(16, 4)
    x = torch.randn(1, 16, 20, 20)
    assert torch.allclose(head(x), sum(b(x) for b in head.branches))
    weights = torch.cat([b.weight.flatten() for b in head.branches])
    assert abs(weights.std().item() - 0.01) < 0.002 and abs(weights.mean().item()) < 0.002


def test_frozen_bn_keeps_statistics_and_affine():
    model = tiny(bn_mode="frozen").train()
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert torch.equal(bn.running_mean, before)
    assert not bn.weight.requires_grad and not bn.training


def test_frozen_affine_updates_statistics_only():
    model = tiny(bn_mode="frozen_affine").train()
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert not torch.equal(bn.running_mean, before)
    assert not bn.weight.requires_grad
    backbone, heads = model.param_groups()
    assert all(p.requires_grad for p in backbone)
    assert len(heads) == 2 * 4 * 2  # main + aux head, 4 branches, weight + bias

def test_pretrained_weights_from_a_local_file(tmp_path):
    source = timm.create_model("resnet10t", num_classes=0)
    path = tmp_path / "backbone.pt"
    torch.save(source.state_dict(), path)
    model = tiny(pretrained=str(path))
    assert torch.equal(model.backbone.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        tiny(pretrained=str(tmp_path / "nope.pt"))


def test_unreadable_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UdabenchError, match="cannot read"):
        tiny(pretrained=str(path))


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="backbone"):
        DeepLabV2("no_such_net", 3)


# ---- DeepLab-V2 VGG-16 (the papers' VGG rows) ------------------------------------------------------------

TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)   # indices in torchvision's features


@pytest.fixture(scope="module")
def torchvision_vgg16(tmp_path_factory):
    """A torchvision vgg16 state dict on disk (random init: no download). The 100M-parameter fully connected
    layers are left out except the last, which stands for the keys a backbone loader must ignore."""
    torchvision = pytest.importorskip("torchvision")
    state = torchvision.models.vgg16(weights=None).state_dict()
    state = {k: v for k, v in state.items() if k.startswith(("features.", "classifier.6."))}
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(state, path)
    return path, state


def test_vgg16_output_shapes_at_stride_8():
    model = DeepLabV2("vgg16", num_classes=5, multi_level=False)
    out = model(torch.randn(2, 3, 64, 96))
    assert out.main.shape == (2, 5, 8, 12) and out.aux is None
    assert out.features.shape == (2, 1024, 8, 12)                    # fc7
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3 + [4, 4]   # conv1-4, conv5 (×2), fc6/fc7 (×4)
    assert not [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_vgg16_loads_every_conv_of_a_torchvision_state_dict(torchvision_vgg16):
    path, state = torchvision_vgg16
    model = build_model(ModelConfig(backbone="vgg16", pretrained=str(path), multi_level=False), num_classes=3)
    features = model.backbone.features
    for i in TORCHVISION_VGG16_CONVS:
        assert torch.equal(features[i].weight, state[f"features.{i}.weight"])
        assert torch.equal(features[i].bias, state[f"features.{i}.bias"])
    assert sum(isinstance(m, torch.nn.Conv2d) for m in features) == 13


def test_vgg16_weights_with_a_missing_conv_are_refused(torchvision_vgg16, tmp_path):
    _, state = torchvision_vgg16
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("features.26.")}, path)
    with pytest.raises(UdabenchError, match=r"2 missing, e\.g\. features\.26\.weight, features\.26\.bias"):
        DeepLabV2("vgg16", 3, multi_level=False, pretrained=str(path))


def test_vgg16_is_single_level_and_has_no_timm_weights():
    with pytest.raises(ConfigError, match=r"single feature level.*model\.multi_level: false"):
        DeepLabV2("vgg16", 3, multi_level=True)
    with pytest.raises(ConfigError, match="torchvision vgg16 state dict"):
        DeepLabV2("vgg16", 3, multi_level=False, pretrained="timm")


def test_vgg16_trains_every_parameter_with_heads_in_their_own_group():
    model = DeepLabV2("vgg16", num_classes=4, multi_level=False, bn_mode="frozen").train()
    backbone, heads = model.param_groups()
    assert len(backbone) == 2 * 15 and len(heads) == 2 * 4             # 13 convs + fc6 + fc7; 4 ASPP branches
    out = model(torch.randn(1, 3, 32, 48))
    torch.nn.functional.cross_entropy(out.main, torch.randint(0, 4, (1, 4, 6))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone + heads)


def test_list_backbones_shows_vgg16(capsys):
    from udabench.cli import main

    assert main(["list", "backbones"]) == 0
    assert any(line.startswith("vgg16 ") for line in capsys.readouterr().out.splitlines())


@pytest.mark.parametrize("suite", ["gta5_cityscapes", "synthia_cityscapes"])
def test_the_vgg16_override_in_a_paper_suite_builds(suite, monkeypatch):
    path = Path(__file__).parent.parent / "suites" / f"{suite}.yaml"
    overrides = [s.strip("'") for s in re.findall(r"--set (\S+)", path.read_text())]
    assert any(o == "model.backbone=vgg16" for o in overrides)
    monkeypatch.setenv("UDABENCH_DATA", "/data")
    cfg = load_suite(path, overrides + ["model.pretrained=none"])   # the weights file is not here
    assert cfg.name.endswith("_vgg16")
    build_model(cfg.model, get_class_set(cfg.classes).num_classes)
