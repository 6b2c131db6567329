"""DeepLab-V2 over any timm backbone (Chen et al., TPAMI'17; the ADVENT/AdaptSegNet configuration).

Backbone: timm ``features_only`` at output stride 8 (layer3 and layer4 dilated), or one of udabench's
own trunks (``OWN_BACKBONES``: the papers' caffe-style DeepLab ResNet-101, and the DeepLab-V2 VGG-16, which
timm cannot dilate). The model's first operation is the input normalisation its weights expect
(``input_norm.py``); weight files are read by ``weights.py``. Classifier: the
DeepLab-V2 "ASPP", a *sum* of parallel 3×3 convolutions with dilations 6/12/18/24 straight to class
logits (bias, weights N(0, 0.01)); ``dilations=(6, 12)`` reproduces the 2-branch variant that
AdaptSegNet/MaxSquare actually ran because of an early ``return`` in their loop. An optional
auxiliary head on layer3 gives the multi-level outputs of ADVENT/AdaptSegNet.

BN modes (recorded in every result row, the source of many irreproducible baselines):
- ``frozen``: affine and running statistics frozen, BN always in eval mode (FADA's ``FrozenBatchNorm2d``);
- ``frozen_affine``: affine frozen, batch statistics in training (ADVENT, ``deeplabv2.py:13-26``);
- ``train``: ordinary trainable BN (MaxSquare, ``deeplab_multi.py:13-23``, which keeps only the stem's γ/β fixed:
  ``model.freeze_stem_bn``, ``:75-77``).
``model.bn_eps`` is every BN's epsilon (FADA's ``FrozenBatchNorm2d`` has none: ``layers.py:19``). VGG-16 has no
BN, so these change nothing there.
"""

from __future__ import annotations

from typing import NamedTuple

import timm
import torch
from torch import nn

from ..errors import ConfigError
from .deeplab_resnet import DeepLabResNet
from .input_norm import InputNorm
from .vgg import VGG16DeepLab
from .weights import Layout, default_input_norm, layouts_for, load_backbone_weights

# Backbones timm cannot build as the papers ran them, implemented here.
OWN_BACKBONES = {"deeplab_resnet101": DeepLabResNet, "vgg16": VGG16DeepLab}


class SegOutput(NamedTuple):
    main: torch.Tensor              # N×C×h×w logits at 1/8 of the input
    aux: torch.Tensor | None        # same from the layer3 head, None without multi-level
    features: torch.Tensor          # N×D×h×w last-level features: layer4, fc7 for VGG-16 (FADA, class centres)

    def levels(self) -> dict[str, torch.Tensor]:
        """The heads' logits by level, ``{"main": ..., "aux": ...}``, without a missing auxiliary head."""
        return {"main": self.main} | ({"aux": self.aux} if self.aux is not None else {})


class ASPPClassifier(nn.Module):
    """``bias_init``: ``zeros``, or ``pytorch``: ``nn.Conv2d``'s own U(±1/√fan_in), which the official heads keep
    (ADVENT ``deeplabv2.py:55-59``, MaxSquare ``deeplab_multi.py:56-60``, FADA ``classifier.py:10-24``)."""

    def __init__(self, in_channels: int, num_classes: int, dilations=(6, 12, 18, 24), bias_init: str = "zeros"):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            if bias_init == "zeros":
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    def __init__(self, backbone: str, num_classes: int, dilations=(6, 12, 18, 24), multi_level: bool = True,
                 bn_mode: str = "frozen", pretrained: str = "none", input_norm: str = "auto",
                 head_bias_init: str = "zeros", bn_eps: float = 1e-5, freeze_stem_bn: bool = False):
        super().__init__()
        self.backbone, layout = build_backbone(backbone, pretrained)
        if input_norm == "auto":
            input_norm = layout.input_norm if layout else default_input_norm(backbone, pretrained)
        self.input_norm = InputNorm(input_norm)
        *aux_channels, main_channels = self.backbone.feature_info.channels()
        if multi_level and not aux_channels:
            raise ConfigError(f"model.multi_level: backbone {backbone!r} has a single feature level, so there is "
                              f"no auxiliary head (the papers' DeepLab-V2 VGG-16 is single-level). Set "
                              f"model.multi_level: false.")
        self.head = ASPPClassifier(main_channels, num_classes, dilations, head_bias_init)
        self.aux_head = ASPPClassifier(aux_channels[-1], num_classes, dilations, head_bias_init) if multi_level else None
        self.bn_mode = bn_mode
        norms = list(self._batch_norms())
        for bn in norms:
            bn.eps = bn_eps
        if freeze_stem_bn and not norms:
            raise ConfigError(f"model.freeze_stem_bn: backbone {backbone!r} has no batch normalisation; set it to "
                              f"false.")
        frozen = norms if bn_mode in ("frozen", "frozen_affine") else norms[:1] if freeze_stem_bn else []
        for bn in frozen:
            bn.weight.requires_grad_(False)
            bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> SegOutput:
        """``x``: N×3×H×W float RGB images, values 0-255 (the data pipeline's items)."""
        *mid, last = self.backbone(self.input_norm(x))
        aux = self.aux_head(mid[-1]) if self.aux_head is not None else None
        return SegOutput(self.head(last), aux, last)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.bn_mode == "frozen":
            for bn in self._batch_norms():
                bn.eval()
        return self

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, head parameters), trainable ones only; heads get the LR multiplier."""
        heads = [p for m in (self.head, self.aux_head) if m is not None for p in m.parameters()]
        return [p for p in self.backbone.parameters() if p.requires_grad], heads

    def _batch_norms(self):
        return (m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def build_backbone(name: str, pretrained: str) -> tuple[nn.Module, Layout | None]:
    """A dilated (output stride 8) feature extractor returning its levels, last = main, as a list, and the
    layout its weights file was read as (None without a file)."""
    if name in OWN_BACKBONES:
        if pretrained == "timm":
            files = " or ".join(layout.description for layout in layouts_for(name))
            raise ConfigError(f"model.pretrained: 'timm' has no weights for udabench's own {name!r} backbone. "
                              f"Give the path of {files} (docs/datasets.md), or 'none'.")
        backbone = OWN_BACKBONES[name]()
    else:
        try:
            backbone = timm.create_model(name, features_only=True, output_stride=8, out_indices=(-2, -1),
                                         pretrained=pretrained == "timm")
        except (AssertionError, RuntimeError, ValueError, TypeError) as exc:  # timm asserts on unsupported strides
            raise ConfigError(f"model.backbone {name!r} cannot be built as a dilated timm feature "
                              f"extractor (features_only, output_stride=8): {exc or 'not supported by timm'}. Pick one "
                              f"from `udabench list backbones`.") from None
    layout = load_backbone_weights(backbone, name, pretrained) if pretrained not in ("none", "timm") else None
    return backbone, layout


def build_model(cfg, num_classes: int) -> DeepLabV2:
    return DeepLabV2(cfg.backbone, num_classes, cfg.aspp_dilations, cfg.multi_level, cfg.bn_mode, cfg.pretrained,
                     cfg.input_norm, cfg.head_bias_init, cfg.bn_eps, cfg.freeze_stem_bn)
