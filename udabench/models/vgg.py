"""The DeepLab-V2 VGG-16 trunk of the papers' VGG-16 rows (AdaptSegNet's ``deeplab_vgg.py``, FADA's VGG).

VGG-16's thirteen 3×3 convolutions with pool4 and pool5 removed and conv5_1-3 dilated by 2, so only
pool1-3 subsample (output stride 8); then two new layers, fc6 = 3×3 conv 512→1024 and fc7 = 3×3 conv
1024→1024, both dilation 4 with ReLU, randomly initialised (PyTorch's default), no dropout. The
DeepLab-V2 ASPP head sits on fc7's 1024 channels.

Why this variant and not DeepLab-LargeFOV (pool4/pool5 kept at stride 1, fc6 dilation 12, fc7 1×1 with
dropout, both subsampled from VGG's fully connected weights): it is what the UDA code behind the VGG
rows runs. FADA's VGG and AdaptSegNet's are this network (reference §3.4); ADVENT's code has no VGG
model, but it is AdaptSegNet's code base and its paper puts the same ASPP on "the last layer" of both
backbones. The paper VGG has a single head: ADVENT (§4.1) uses multi-level outputs "to further improve
performance on ResNet-101" only, and AdaptSegNet's VGG has one classifier, so there is no auxiliary level.

VGG-16 has no batch normalisation: ``model.bn_mode`` has nothing to act on (it is still recorded).
The layer indices of ``features`` are torchvision's (pool4 is an ``Identity`` at index 23), so a
torchvision ``vgg16`` state dict loads by name: ``features.N.weight`` → ``features.N.weight``.
"""

from __future__ import annotations

from torch import nn

# Output widths of VGG-16's five convolution stages.
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class FeatureLevels:
    """The part of timm's ``FeatureInfo`` that udabench reads: the channels of each returned level."""

    def __init__(self, *channels: int):
        self._channels = list(channels)

    def channels(self) -> list[int]:
        return list(self._channels)


class VGG16DeepLab(nn.Module):
    """Returns one feature level, fc7 (N×1024×H/8×W/8), like a timm ``features_only`` model."""

    new_layers = ("fc6.", "fc7.")   # not in an ImageNet VGG-16 state dict: trained from scratch

    def __init__(self):
        super().__init__()
        layers, width = [], 3
        for stage, widths in enumerate(STAGES, start=1):
            dilation = 2 if stage == 5 else 1
            for out in widths:
                layers += [nn.Conv2d(width, out, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
                width = out
            if stage <= 3:
                layers.append(nn.MaxPool2d(2, 2))
            elif stage == 4:
                layers.append(nn.Identity())   # pool4 removed; keeps torchvision's indices for conv5
        self.features = nn.Sequential(*layers)  # (no pool5)
        self.fc6 = nn.Sequential(nn.Conv2d(512, 1024, 3, padding=4, dilation=4), nn.ReLU(inplace=True))
        self.fc7 = nn.Sequential(nn.Conv2d(1024, 1024, 3, padding=4, dilation=4), nn.ReLU(inplace=True))
        self.feature_info = FeatureLevels(1024)

    def forward(self, x):
        return [self.fc7(self.fc6(self.features(x)))]
