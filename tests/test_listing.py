"""``train.param_listing``: the DeepLab lineage's repeated parameter listing and the SGD rule the authors' PyTorch
applied to it (engine/listing.py), against the official generator and update restated here."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import official_loops as official
import pytest
import torch
from reference_nets import OfficialDeepLab

from udabench.engine.listing import (
    RepeatedSGD,
    official_multiplicities,
    segmenter_groups,
    segmenter_optimizer,
)
from udabench.errors import ConfigError
from udabench.models import DeepLabV2


def train_cfg(listing="deeplab_official", **kw):
    return SimpleNamespace(**{"lr": 2.5e-4, "head_lr_mult": 10.0, "momentum": 0.9, "weight_decay": 5e-4,
                              "param_listing": listing, "optimizer": "sgd", **kw})


def official_counts(net: OfficialDeepLab) -> Counter:
    """How many entries the official 1× list has for each parameter name."""
    names = {id(p): name for name, p in net.named_parameters()}
    blocks = [net.conv1, net.bn1, net.layer1, net.layer2, net.layer3, net.layer4]
    return Counter(names[id(p)] for p in official.deeplab_1x_params(blocks))


def ours(model: DeepLabV2) -> Counter:
    names = {id(p): name.removeprefix("backbone.") for name, p in model.named_parameters()}
    return Counter({names[id(p)]: k for p, k in official_multiplicities(model.backbone).items()})


@pytest.mark.parametrize("bn_mode, freeze_stem, counts", [
    ("frozen_affine", False, {1: 1, 3: 99, 4: 4}),     # ADVENT: 314 entries for 104 tensors
    ("train", True, {1: 1, 3: 297, 4: 12}),            # MaxSquare: 940 entries for 310 tensors
])
def test_the_multiplicities_are_the_official_generators_on_resnet101(bn_mode, freeze_stem, counts):
    net = OfficialDeepLab(19, width=4)    # ResNet-101's blocks, narrow
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in norms if bn_mode == "frozen_affine" else norms[:1]:
        bn.requires_grad_(False)
    model = DeepLabV2("deeplab_resnet101", 19, bn_mode=bn_mode, freeze_stem_bn=freeze_stem)
    assert ours(model) == official_counts(net)
    assert Counter(ours(model).values()) == counts
    entries = sum(k * n for k, n in counts.items())
    assert entries == (314 if bn_mode == "frozen_affine" else 940)


def test_every_backbone_tensor_is_listed_by_its_depth_in_its_top_level_block():
    vgg = DeepLabV2("vgg16", 19, multi_level=False)
    assert set(ours(vgg).values()) == {2}            # features.N.weight: features, features.N
    timm = DeepLabV2("resnet10t", 19, bn_mode="train")
    counts = ours(timm)
    assert counts["conv1.0.weight"] == 2 and counts["layer1.0.conv1.weight"] == 3
    assert counts["layer2.0.downsample.1.weight"] == 4


def test_the_groups_keep_the_heads_once_at_their_multiplier_and_unique_is_torch_sgd():
    model = DeepLabV2("resnet10t", 19, bn_mode="train")
    groups = segmenter_groups(model, train_cfg())
    assert [g["visits"] for g in groups] == [1, 2, 3, 4, 1] and groups[-1]["lr"] == pytest.approx(2.5e-3)
    assert {id(p) for p in groups[-1]["params"]} == {id(p) for p in model.param_groups()[1]}
    listed = [p for g in groups[:-1] for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == len(model.param_groups()[0])
    unique = segmenter_optimizer(model, train_cfg("unique"))
    assert type(unique) is torch.optim.SGD and len(unique.param_groups) == 2


def test_a_backbone_with_tensors_outside_its_blocks_is_refused_for_the_official_listing():
    model = DeepLabV2("resnet10t", 19, bn_mode="train")
    model.backbone.register_parameter("scale", torch.nn.Parameter(torch.ones(1)))
    with pytest.raises(ConfigError, match="scale.*param_listing: unique"):
        segmenter_groups(model, train_cfg())


def test_repeated_sgd_equals_the_authors_sgd_stepping_every_entry_of_the_list():
    torch.manual_seed(0)
    tensors = [torch.randn(5, 3) for _ in range(4)]
    visits = [1, 3, 4, 1]
    ours_params = [t.clone().requires_grad_() for t in tensors]
    theirs = [t.clone().requires_grad_() for t in tensors]
    groups = [{"params": [p], "visits": k, "lr": 0.1 * (1 + i)} for i, (p, k) in enumerate(zip(ours_params, visits))]
    opt = RepeatedSGD(groups, lr=0.1, momentum=0.9, weight_decay=0.05)
    # the official list: each tensor as many times as it is listed, interleaved as the generator yields them
    entries = [[p for p, k in zip(theirs, visits) for _ in range(k)]]
    reference = official.TorchSGD04(entries, [0.0], momentum=0.9, weight_decay=0.05)
    lr_of = {id(p): 0.1 * (1 + i) for i, p in enumerate(theirs)}
    for step in range(5):
        grads = [torch.randn(5, 3) for _ in tensors]
        for p, q, g in zip(ours_params, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        for p in theirs:   # one TorchSGD04 step per tensor, at its group's LR, over all of the tensor's entries
            reference.groups, reference.lrs = [[q for q in entries[0] if q is p]], [lr_of[id(p)]]
            reference.step()
        for p, q in zip(ours_params, theirs):
            assert torch.equal(p.detach(), q.detach()), f"step {step}"


def test_a_tensor_listed_k_times_moves_k_times_as_far_in_the_steady_state():
    """The effective LR: with one constant gradient, the movement per iteration of a tensor listed k times over
    that of a tensor listed once (docs/recipes.md quotes these)."""
    moves = {}
    for k in (1, 3, 4):
        p = torch.zeros(1, requires_grad=True)
        opt = RepeatedSGD([{"params": [p], "visits": k}], lr=1e-3, momentum=0.9)
        trajectory = []
        for _ in range(200):
            p.grad = torch.ones(1)
            opt.step()
            trajectory.append(-p.item())
        moves[k] = (trajectory[0], trajectory[-1] - trajectory[-2])
    first = {k: moves[k][0] / moves[1][0] for k in (3, 4)}
    steady = {k: moves[k][1] / moves[1][1] for k in (3, 4)}
    assert first[3] == pytest.approx(1 + 1.9 + 2.71) and first[4] == pytest.approx(1 + 1.9 + 2.71 + 3.439)
    assert steady[3] == pytest.approx(3, rel=1e-3) and steady[4] == pytest.approx(4, rel=1e-3)


def test_repeated_sgd_state_survives_a_checkpoint():
    model = DeepLabV2("resnet10t", 19, bn_mode="train")
    opt = segmenter_optimizer(model, train_cfg())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    fresh = segmenter_optimizer(DeepLabV2("resnet10t", 19, bn_mode="train"), train_cfg())
    fresh.load_state_dict(opt.state_dict())
    assert [g["visits"] for g in fresh.param_groups] == [g["visits"] for g in opt.param_groups]
    assert len(fresh.state) == len(opt.state)
