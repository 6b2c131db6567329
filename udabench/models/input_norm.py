"""Input normalisation, the model's first operation: each set of weights expects its own input.

The data pipeline yields float32 RGB images with values 0-255 (``data/base.py``); the model turns them
into what its weights were trained on (``model.input_norm``, recorded in every row's protocol):

- ``imagenet``: RGB, (x - 255·mean) / (255·std) with ImageNet's mean (0.485, 0.456, 0.406) and std
  (0.229, 0.224, 0.225): timm's and torchvision's weights (FADA's ResNet-101, ``defaults.py:20-23``);
- ``caffe_bgr``: BGR, x - (104.00698793, 116.66876762, 122.67891434), no std: the DeepLab init files
  and every model trained from them (ADVENT ``base_dataset.py:35-38``, ``config.py:59``; MaxSquare
  ``cityscapes_Dataset.py:14,229-234``);
- ``caffe_bgr_vgg``: BGR, x - (103.939, 116.779, 123.68), no std: the caffe VGG-16 conversion
  ``vgg16-00b39a1b.pth`` (its author's note, pytorch/vision#28; FADA ``deeplabv2_vgg16_*.yaml``).

``auto`` follows the backbone and the layout of its weights file (``weights.default_input_norm``).
One float32 subtraction and one division, the operations the pipeline used to do on the CPU, so the
ImageNet path gives bit-identical tensors; division by 1 is exact, so the caffe paths equal the
official float32 ``image[:, :, ::-1] - mean``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn


class NormSpec(NamedTuple):
    bgr: bool                  # reverse the channels (RGB -> BGR) first
    mean: np.ndarray           # float32, in the order of the channels after the reversal, 0-255 scale
    std: np.ndarray


def _f32(*values) -> np.ndarray:
    return np.array(values, dtype=np.float32)


INPUT_NORMS = {
    "imagenet": NormSpec(False, _f32(0.485, 0.456, 0.406) * 255, _f32(0.229, 0.224, 0.225) * 255),
    "caffe_bgr": NormSpec(True, _f32(104.00698793, 116.66876762, 122.67891434), _f32(1, 1, 1)),
    "caffe_bgr_vgg": NormSpec(True, _f32(103.939, 116.779, 123.68), _f32(1, 1, 1)),
}


class InputNorm(nn.Module):
    """N×3×H×W float RGB 0-255 -> the normalised input of the weights. Buffers are not persistent:
    state dicts and weight files have no key for them."""

    def __init__(self, name: str):
        super().__init__()
        spec = INPUT_NORMS[name]
        self.name, self.bgr = name, spec.bgr
        self.register_buffer("mean", torch.from_numpy(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.from_numpy(spec.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return self.name
