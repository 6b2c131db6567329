"""DACS's photometric augmentation of training tensors on the device (vikolss/DACS ``utils/transformsgpu.py:7-30``,
its ``strongTransform``), used by DACS on the mixed image and by MIC on the masked one: colour jitter and Gaussian
blur of 0-255 RGB N×3×H×W images (jittered one image at a time).

The jitter follows torchvision's ColorJitter (a random order of the four ops), not kornia's that DACS calls; the
official one jitters a BGR image. The blur is kornia's GaussianBlur2d with DACS's kernel size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def blur_kernel_size(side: int) -> int:
    """The official kernel size: the largest odd number ≤ ⌈0.1·side⌉ (transformsgpu.py:25-26)."""
    c = int(np.ceil(0.1 * side))
    return c if c % 2 else c - 1


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """kornia's GaussianBlur2d as DACS calls it: normalised separable kernel, reflect padding."""
    ky, kx = blur_kernel_size(image.shape[-2]), blur_kernel_size(image.shape[-1])
    out = F.pad(image, (kx // 2, kx // 2, ky // 2, ky // 2), mode="reflect")
    for k, shape in ((ky, (-1, 1)), (kx, (1, -1))):
        x = torch.arange(k, dtype=image.dtype, device=image.device) - k // 2
        g = torch.exp(-x ** 2 / (2 * sigma ** 2))
        weight = (g / g.sum()).view(1, 1, *shape).expand(image.shape[1], 1, *shape)
        out = F.conv2d(out, weight, groups=image.shape[1])
    return out


def color_jitter(image: torch.Tensor, strength: float) -> torch.Tensor:
    """torchvision ColorJitter(b=c=s=strength, hue=strength) on one 0-255 RGB image (1×3×H×W)."""
    x = image / 255
    b, c, s = (float(torch.empty(1).uniform_(1 - strength, 1 + strength)) for _ in range(3))
    h = float(torch.empty(1).uniform_(-strength, strength))
    ops = (lambda x: TF.adjust_brightness(x, b), lambda x: TF.adjust_contrast(x, c),
           lambda x: TF.adjust_saturation(x, s), lambda x: TF.adjust_hue(x, h))
    for i in torch.randperm(4).tolist():
        x = ops[i](x)
    return x * 255
