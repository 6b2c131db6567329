"""DeepLab-V2 over any timm backbone (Chen et al., TPAMI'17; the ADVENT/AdaptSegNet configuration).

Backbone: timm ``features_only`` at output stride 8 (layer3 and layer4 dilated), or one of udabench's
own trunks (``OWN_BACKBONES``: the DeepLab-V2 VGG-16, which timm cannot dilate). Classifier: the
DeepLab-V2 "ASPP", a *sum* of parallel 3×3 convolutions with dilations 6/12/18/24 straight to class
logits (bias, weights N(0, 0.01)); ``dilations=(6, 12)`` reproduces the 2-branch variant that
AdaptSegNet/MaxSquare actually ran because of an early ``return`` in their loop. An optional
auxiliary head on layer3 gives the multi-level outputs of ADVENT/AdaptSegNet.

BN modes (recorded in every result row, the source of many irreproducible baselines):
- ``frozen``: affine and running statistics frozen, BN always in eval mode;
- ``frozen_affine``: affine frozen, batch statistics in training (ADVENT/MaxSquare reality);
- ``train``: ordinary trainable BN (for backbones trained from scratch).
VGG-16 has no BN, so the mode changes nothing there.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import timm
import torch
from torch import nn

from ..errors import ConfigError, UdabenchError
from .vgg import VGG16DeepLab

# Backbones timm cannot build at output stride 8, implemented here.
OWN_BACKBONES = {"vgg16": VGG16DeepLab}


class SegOutput(NamedTuple):
    main: torch.Tensor              # N×C×h×w logits at 1/8 of the input
    aux: torch.Tensor | None        # same from the layer3 head, None without multi-level
    features: torch.Tensor          # N×D×h×w last-level features: layer4, fc7 for VGG-16 (FADA, class centres)

    def levels(self) -> dict[str, torch.Tensor]:
        """The heads' logits by level, ``{"main": ..., "aux": ...}``, without a missing auxiliary head."""
        return {"main": self.main} | ({"aux": self.aux} if self.aux is not None else {})


class ASPPClassifier(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class DeepLabV2(nn.Module):
    def __init__(self, backbone: str, num_classes: int, dilations=(6, 12, 18, 24), multi_level: bool = True,
                 bn_mode: str = "frozen", pretrained: str = "none"):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained)
        *aux_channels, main_channels = self.backbone.feature_info.channels()
        if multi_level and not aux_channels:
            raise ConfigError(f"model.multi_level: backbone {backbone!r} has a single feature level, so there is "
                              f"no auxiliary head (the papers' DeepLab-V2 VGG-16 is single-level). Set "
                              f"model.multi_level: false.")
        self.head = ASPPClassifier(main_channels, num_classes, dilations)
        self.aux_head = ASPPClassifier(aux_channels[-1], num_classes, dilations) if multi_level else None
        self.bn_mode = bn_mode
        if bn_mode in ("frozen", "frozen_affine"):
            for bn in self._batch_norms():
                bn.weight.requires_grad_(False)
                bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> SegOutput:
        *mid, last = self.backbone(x)
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


def build_backbone(name: str, pretrained: str) -> nn.Module:
    """A dilated (output stride 8) feature extractor returning its levels, last = main, as a list."""
    if name in OWN_BACKBONES:
        if pretrained == "timm":
            raise ConfigError(f"model.pretrained: 'timm' has no weights for udabench's own {name!r} backbone. "
                              f"Give the path of a torchvision {name} state dict (docs/datasets.md) or 'none'.")
        backbone = OWN_BACKBONES[name]()
    else:
        try:
            backbone = timm.create_model(name, features_only=True, output_stride=8, out_indices=(-2, -1),
                                         pretrained=pretrained == "timm")
        except (AssertionError, RuntimeError, ValueError, TypeError) as exc:  # timm asserts on unsupported strides
            raise ConfigError(f"model.backbone {name!r} cannot be built as a dilated timm feature "
                              f"extractor (features_only, output_stride=8): {exc or 'not supported by timm'}. Pick one "
                              f"from `udabench list backbones`.") from None
    if pretrained not in ("none", "timm"):
        load_backbone_weights(backbone, pretrained)
    return backbone


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load a state dict of the plain backbone (timm's, or torchvision's for udabench's VGG-16).

    Every tensor of the backbone must be in the file with its shape, except the backbone's
    ``new_layers`` (layers the ImageNet network does not have); other keys (classifiers) are ignored.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"model.pretrained: weights file {path!r} does not exist. Give the path of a "
                          f"state dict saved from the backbone (docs/datasets.md), 'timm' for timm's own "
                          f"weights, or 'none' to train from scratch.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-tensor pickle: say which file, whatever torch raised
        raise UdabenchError(f"model.pretrained: cannot read {path!r} as a PyTorch state dict ({exc}).") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith(getattr(backbone, "new_layers", ()))}
    missing = [k for k in own if k not in state]
    shape = lambda t: tuple(getattr(t, "shape", ()))
    wrong = [f"{k} {shape(state[k])} (model: {shape(v)})" for k, v in own.items() if k in state and shape(state[k]) != shape(v)]
    if len(missing) == len(own):
        raise UdabenchError(f"model.pretrained: no tensor in {path!r} matches the backbone's parameter "
                            f"names (e.g. {next(iter(own))!r}); was it saved from another model?")
    if missing or wrong:
        problems = [f"{len(missing)} missing, e.g. {', '.join(missing[:3])}"] if missing else []
        problems += [f"{len(wrong)} with another shape, e.g. {', '.join(wrong[:3])}"] if wrong else []
        raise UdabenchError(f"model.pretrained: {path!r} does not fit the backbone: {'; '.join(problems)}. "
                            f"Save the state dict of the same architecture (docs/datasets.md).")
    backbone.load_state_dict({k: state[k] for k in own}, strict=False)


def build_model(cfg, num_classes: int) -> DeepLabV2:
    return DeepLabV2(cfg.backbone, num_classes, cfg.aspp_dilations, cfg.multi_level, cfg.bn_mode, cfg.pretrained)
