"""A domain's look on the painted colours: class-specific texture, lighting, blur and pixel noise. They change colours
only, and draw from their own random stream, so appearance knobs never change a label."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from .config import DomainStyle
from .palette import stripe_table


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int = 16) -> np.ndarray:
    small = rng.normal(0.0, 1.0, (max(2, height // cell), max(2, width // cell))).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def apply_style(rgb: np.ndarray, label: np.ndarray, style: DomainStyle, domain_key: int,
                rng: np.random.Generator) -> np.ndarray:
    """Texture, lighting, blur and noise on the painted colours (modified in place) -> uint8 RGB.

    The same random numbers are drawn whatever the knob values, so a knob only scales its effect.
    """
    height, width = label.shape
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height  # both in units of image height
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / height
    phase, blotches = rng.uniform(0, 2 * np.pi), _smooth_noise(rng, height, width)
    theta, exposure = rng.uniform(0, 2 * np.pi), rng.normal()
    gradient = np.cos(theta) * (2 * xx * height / width - 1) + np.sin(theta) * (2 * yy - 1)
    gain = np.float32(np.exp(0.3 * style.lighting * exposure)) * (1.0 + 0.5 * style.lighting * gradient)
    if style.texture > 0:
        kx, ky = stripe_table(domain_key)
        stripes = np.sin(kx[label] * xx + ky[label] * yy + np.float32(phase))
        gain = gain * (1.0 + 0.5 * style.texture * (0.6 * stripes + 0.4 * blotches))
    rgb *= gain
    planar = (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(planar.transpose(1, 2, 0)))
    if style.blur > 0:  # one box pass of the same std as a Gaussian of sigma `blur`: 3x faster than PIL's Gaussian
        image = image.filter(ImageFilter.BoxBlur((math.sqrt(12 * style.blur**2 + 1) - 1) / 2))
    if style.noise <= 0:
        return np.asarray(image)
    grain = rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(255.0 * style.noise)  # luminance
    return np.clip(np.asarray(image, dtype=np.float32) + grain + 0.5, 0, 255).astype(np.uint8)
