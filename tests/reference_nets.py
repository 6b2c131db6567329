"""Independent reference networks for the tests: the official models as their code describes them.

Written from the official sources, not from udabench's modules, with the official attribute names, so
that ``state_dict()`` gives the official files' keys:
- ``OfficialDeepLab``: ADVENT ``advent/model/deeplabv2.py`` (``ResNetMulti``), MaxSquare/AdaptSegNet
  ``deeplab_multi.py`` with ``maxsquare_bug=True`` (``Classifier_Module.forward`` returns after two branches);
- ``fada_vgg16``: FADA ``core/models/feature_extractor.py:8-32`` (pool4/pool5 removed, conv5 dilated, fc6/fc7);
- the torchvision ResNet of FADA is ``torchvision.models.resnet*`` itself.
``layers`` and ``width`` shrink the ResNet for fast tests (official: [3, 4, 23, 3], 64).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CAFFE_MEAN_BGR = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)   # ADVENT config.py:59
VGG_MEAN_BGR = np.array((103.939, 116.779, 123.68), dtype=np.float32)                     # FADA vgg16 configs


class OfficialBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class OfficialClassifier(nn.Module):
    def __init__(self, inplanes, num_classes, maxsquare_bug=False):
        super().__init__()
        self.conv2d_list = nn.ModuleList(nn.Conv2d(inplanes, num_classes, 3, padding=d, dilation=d, bias=True)
                                         for d in (6, 12, 18, 24))
        self.maxsquare_bug = maxsquare_bug

    def forward(self, x):
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
            if self.maxsquare_bug:
                return out           # AdaptSegNet/MaxSquare: the loop returns after the second branch
        return out


class OfficialDeepLab(nn.Module):
    """``forward`` returns (aux = layer5(layer3), main = layer6(layer4)) at 1/8, like ADVENT's; ``features``
    keeps (layer3, layer4) of the last forward."""

    def __init__(self, num_classes=19, layers=(3, 4, 23, 3), width=64, multi_level=True, maxsquare_bug=False):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=1, dilation=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=1, dilation=4)
        if multi_level:
            self.layer5 = OfficialClassifier(width * 16, num_classes, maxsquare_bug)
        self.layer6 = OfficialClassifier(width * 32, num_classes, maxsquare_bug)
        self.features = None

    def _make_layer(self, planes, blocks, stride=1, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4 or dilation in (2, 4):
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        stage = [OfficialBottleneck(self.inplanes, planes, stride, dilation=dilation, downsample=downsample)]
        self.inplanes = planes * 4
        stage += [OfficialBottleneck(self.inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x3 = self.layer3(self.layer2(self.layer1(x)))
        x4 = self.layer4(x3)
        self.features = (x3, x4)
        return (self.layer5(x3) if hasattr(self, "layer5") else None), self.layer6(x4)


def fada_vgg16(num_classes=19):
    """(feature extractor as FADA builds it, classifier) from torchvision's VGG-16 convolutions."""
    from torchvision.models.vgg import cfgs, make_layers

    features = list(make_layers(cfgs["D"]).children())
    features = [features[i] for i in list(range(23)) + list(range(24, 30))]   # drop pool4 (23) and pool5 (30)
    for i in (23, 25, 27):
        features[i].dilation, features[i].padding = (2, 2), (2, 2)
    fc6 = nn.Conv2d(512, 1024, kernel_size=3, padding=4, dilation=4)
    fc7 = nn.Conv2d(1024, 1024, kernel_size=3, padding=4, dilation=4)
    backbone = nn.Sequential(*features, fc6, nn.ReLU(inplace=True), fc7, nn.ReLU(inplace=True))
    return backbone, OfficialClassifier(1024, num_classes)


def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (so that every tensor matters), scaled to keep activations finite."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model.eval()


def caffe_input(rgb: np.ndarray, mean=CAFFE_MEAN_BGR) -> torch.Tensor:
    """ADVENT's preprocessing (``base_dataset.py:35-38``) of float32 RGB H×W×3 images: BGR, minus the mean."""
    image = np.asarray(rgb, np.float32)[:, :, ::-1] - mean
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None]


# ---- files in the official layouts, written from a reference model ---------------------------------------------

NARROW = {"layers": (1, 1, 2, 1), "width": 8}     # a fast stand-in for ResNet-101 where only names matter


def _legacy_save(obj, path, legacy: bool = True):
    """``torch.save``; ``legacy``: the pre-1.6 file format the 2017-2019 releases were written in."""
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _without_counters(state: dict) -> dict:
    """A state dict as PyTorch < 0.4.1 wrote it: no BN ``num_batches_tracked``."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def deeplab_init_file(ref: OfficialDeepLab, path, prefix: str = "Scale", classifier: bool = True,
                      counters: bool = False, legacy: bool = True):
    """AdaptSegNet/MaxSquare's DeepLab_resnet_pretrained_init-f81d91e8.pth (and, as far as ADVENT's loader tells,
    its DeepLab_resnet_pretrained_imagenet.pth): the trunk under ``Scale.``, a 21-class ``layer5`` on layer4."""
    trunk = {k: v for k, v in ref.state_dict().items() if not k.startswith(("layer5.", "layer6."))}
    if not counters:
        trunk = _without_counters(trunk)
    state = {f"{prefix}.{k}": v for k, v in trunk.items()}
    if classifier:
        voc = OfficialClassifier(ref.layer6.conv2d_list[0].in_channels, 21)
        state.update({f"{prefix}.layer5.{k}": v for k, v in voc.state_dict().items()})
    return _legacy_save(state, path, legacy)


def advent_checkpoint(ref: OfficialDeepLab, path):
    """ADVENT's released models and snapshots: ``torch.save(model.state_dict())`` (train_UDA.py:184)."""
    return _legacy_save(ref.state_dict(), path, legacy=False)


def maxsquare_checkpoint(ref: OfficialDeepLab, path, iteration: int = 29760):
    """MaxSquare's save_checkpoint (train_source.py:465-481): DataParallel names, numpy best_MIou."""
    return _legacy_save({"epoch": 10, "iteration": iteration,
                         "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()},
                         "optimizer": {"state": {}, "param_groups": [{"lr": 2.5e-4, "params": [0, 1]}]},
                         "best_MIou": np.float64(0.452)}, path, legacy=False)


def fada_checkpoint(trunk_state: dict, classifier: nn.Module, path, iteration: int = 40000):
    """FADA's train_adv.py:249 under DDP: ``module.``-prefixed feature extractor (``backbone.`` inside) and head."""
    return _legacy_save({"iteration": iteration,
                         "feature_extractor": {f"module.backbone.{k}": v for k, v in trunk_state.items()},
                         "classifier": {f"module.{k}": v for k, v in classifier.state_dict().items()},
                         "model_D": {}, "optimizer_fea": {}, "optimizer_cls": {}, "optimizer_D": {}},
                        path, legacy=False)
