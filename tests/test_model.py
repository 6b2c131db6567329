import pytest
import timm
import torch

from udabench.errors import ConfigError, UdabenchError
from udabench.models import ASPPClassifier, DeepLabV2


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
