"""The label-free validators of one evaluation: a fixed sample of training images in, the rows' ``validator_*`` out.

The sample (``ValidatorSample``) is drawn once per run from ``validators.seed``: ``validators.images`` images of the
target *training* split, and as many of the source training split for the discriminator's accuracy. It holds
images only (``ImagesOnly``): a validator cannot read a label, by construction. Pixel draws come from a generator
re-seeded at every evaluation, so each evaluation scores the same pixels, and nothing here draws from the global
RNG: training numbers are those of a run without validators. The scores are udabench/validators.py's pure
functions; every rank computes the same values on the whole sample (a DDP forward on one rank alone would hang).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import Suite
from ..losses import upsample
from ..validators import (
    batch_nuclear_norm,
    discriminator_accuracy,
    information_maximization,
    mean_entropy,
    sample_pixels,
    soft_neighbourhood_density,
)
from .rundata import make_loader


class ImagesOnly(Dataset):
    """The images of ``indices`` of ``dataset``, without their labels (or anything else)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.dataset[self.indices[i]]["image"]}


@dataclass
class ValidatorSample:
    target: ImagesOnly
    source: ImagesOnly | None    # None: no source split (a method without one)


def validator_sample(suite: Suite, target, source=None) -> ValidatorSample | None:
    """The fixed sample of ``validators.images`` images of each training split (None when it is 0 or there is no
    target split); the same images for every run of the suite."""
    n = suite.validators.images
    if n == 0 or target is None:
        return None
    rng = np.random.default_rng(suite.validators.seed)
    pick = lambda ds: ImagesOnly(ds, sorted(rng.choice(len(ds), min(n, len(ds)), replace=False).tolist()))
    return ValidatorSample(pick(target), pick(source) if source is not None else None)


@torch.no_grad()
def score_validators(model, method, sample: ValidatorSample, suite: Suite, device: torch.device,
                     autocast=None) -> dict:
    """The ``validator_*`` fields of a row for ``model`` (in eval mode) and ``method`` (its ``domain_logits``
    gives the discriminator's accuracy; None for a method without a discriminator), and their cost in seconds."""
    began, cfg = time.perf_counter(), suite.validators
    generator = torch.Generator().manual_seed(cfg.seed)
    probs, pixels, target_d = [], [], []
    for image in _images(sample.target, suite, device):
        with _autocast(autocast):
            out = model(image)
            d = method.domain_logits(out, image) if method is not None else None
        prob = out.main.float().softmax(1)
        probs.append(prob.cpu())   # at score resolution, as the eval's target_entropy
        full = upsample(out.main.float(), image.shape[-2:], suite.eval.align_corners).softmax(1)
        pixels.append(sample_pixels(full, cfg.pixels, generator).cpu())   # at the input size, as SND's code
        if d is not None:
            target_d.append(d.float().flatten().cpu())
    prob, pixels = torch.cat(probs), torch.cat(pixels)
    row = {"validator_entropy": mean_entropy(prob), "validator_im": information_maximization(prob),
           "validator_bnm": batch_nuclear_norm(pixels),
           "validator_snd": soft_neighbourhood_density(pixels, cfg.temperature)}
    if target_d and sample.source is not None:
        source_d = []
        for image in _images(sample.source, suite, device):
            with _autocast(autocast):
                source_d.append(method.domain_logits(model(image), image).float().flatten().cpu())
        row["validator_disc_acc"] = discriminator_accuracy(torch.cat(source_d), torch.cat(target_d))
    row["validator_seconds"] = time.perf_counter() - began
    return row


def _images(dataset: ImagesOnly, suite: Suite, device: torch.device):
    loader = make_loader(dataset, suite.data.eval_batch_size, 0, device)
    for batch in loader:
        yield batch["image"].to(device, non_blocking=True)


def _autocast(autocast):
    return autocast() if autocast is not None else contextlib.nullcontext()
