"""The papers' own trunk: the caffe-style DeepLab-V2 ResNet-101 of ADVENT, AdaptSegNet and MaxSquare.

The network of ADVENT ``advent/model/deeplabv2.py`` (MaxSquare's and AdaptSegNet's ``deeplab_multi.py`` are
the same trunk), which is not the torchvision/timm ResNet (``../shared/reference/fidelity-audit.md`` item 2):

- bottleneck with the stride in the first 1×1 convolution (l.12); the 3×3 has stride 1 and padding =
  dilation (l.18-19);
- stem: 7×7/2 convolution without bias, BN, ReLU, 3×3/2 max-pool with ``ceil_mode=True`` (l.74-79);
- layers [3, 4, 23, 3]: layer2 has stride 2, layer3 dilation 2 and layer4 dilation 4 in *every* block,
  block 0 included (l.82-83, 107-111);
- a 1×1 projection with BN on the first block of every layer (l.96-105: forced by dilation 2/4 even
  where the shapes would not need it).

Output stride 8 with ceil-mode grids: 1024×512 -> 129×65, 1280×720 -> 161×91 (timm's: 128×64, 160×90).
Parameter names are timm's/torchvision's (``conv1``, ``bn1``, ``layerL.B.{conv1,bn1,conv2,bn2,conv3,bn3,
downsample.0,downsample.1}``), which are also the official files' names once their first component
(``Scale.``) is dropped, so they load without renaming (``weights.py``). BN: ``nn.BatchNorm2d`` with its
defaults (eps 1e-5, momentum 0.1, affine), as in the official code; ``model.bn_mode`` decides what trains.
Without a weights file the convolutions keep PyTorch's default init (the official N(0, 0.01) only
ever stands until the init file is copied in).
"""

from __future__ import annotations

from torch import nn

from .vgg import FeatureLevels

LAYERS_101 = (3, 4, 23, 3)
EXPANSION = 4


class CaffeBottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, project: bool = False):
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)   # stride here (caffe style)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                        nn.BatchNorm2d(out)) if project else None

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class DeepLabResNet(nn.Module):
    """Returns [layer3, layer4] (N×1024×h×w, N×2048×h×w at 1/8, ceil-mode grid), like a timm ``features_only``
    model. ``layers`` and ``width`` (64 in ResNet-101) exist so that tests can build small variants."""

    new_layers = ()   # every tensor comes from the init file

    def __init__(self, layers: tuple[int, ...] = LAYERS_101, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        inplanes = width
        for index, (blocks, stride, dilation) in enumerate(zip(layers, (1, 2, 1, 1), (1, 1, 2, 4)), start=1):
            planes = width * 2 ** (index - 1)
            stage = [CaffeBottleneck(inplanes, planes, stride, dilation, project=True)]
            stage += [CaffeBottleneck(planes * EXPANSION, planes, dilation=dilation) for _ in range(1, blocks)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            inplanes = planes * EXPANSION
        self.feature_info = FeatureLevels(inplanes // 2, inplanes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x3 = self.layer3(self.layer2(self.layer1(x)))
        return [x3, self.layer4(x3)]
