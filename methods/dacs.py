"""DACS — cross-domain mixed sampling with a mean teacher's pseudo-labels.

Tranheden, Olsson, Pinto, Svensson. "DACS: Domain Adaptation via Cross-domain Mixed Sampling", WACV 2021, §3
(ClassMix across domains, Algorithm 1). Per step, for each source/target pair (x_S, y_S), x_T:

    ŷ_T = argmax_c softmax(g_ξ(x_T))            g_ξ: the EMA teacher, ξ ← a ξ + (1 − a) θ after every step,
                                                a = min(1 − 1/(i + 1), α), α = 0.99 (trainUDA.py:111-121, 508-511)
    M   = [y_S ∈ C],  C: ⌈n/2⌉ of the n classes in y_S, drawn without replacement (trainUDA.py:424-435)
    x_M = M ⊙ x_S + (1 − M) ⊙ x_T,  y_M = M ⊙ y_S + (1 − M) ⊙ ŷ_T       (utils/transformsgpu.py:oneMix)
    L   = CE(f_θ(x_S), y_S) + λ · mean_hw [w ⊙ CE(f_θ(jitter(blur(x_M))), y_M)]

with w = 1 on pasted source pixels and, on target pixels, the fraction of the batch's teacher pixels whose max
probability is ≥ 0.968 ("threshold_uniform", trainUDA.py:466-479); the mean runs over all pixels, ignored ones
count as 0 (utils/loss.py:35-43). The ignore label is one of y_S's classes when drawing C, as in the official code
(trainUDA.py:426-427, the filter commented out). Colour jitter (p 0.8, strength 0.25) and Gaussian blur (p 0.5,
σ ~ U(0.15, 1.15)) act on the mixed image (``udabench/photometric.py``); the two draws deciding them are made once
per step for all images (trainUDA.py:445-452).
DAFormer/MIC's DACS differs in α 0.999 (with ImageNet feature distance), ``ema_step_offset`` 1 (dacs.py:320-321),
jitter strength 0.2 (configs/_base_/uda/dacs.py). docs/recipes.md ("DACS") lists each value with its source.
"""

import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from udabench import Method, register
from udabench.errors import ConfigError
from udabench.photometric import color_jitter, gaussian_blur
from udabench.schema import at_least, between, setting


def class_mix_masks(labels: torch.Tensor) -> torch.Tensor:
    """N×H×W bool: per image, the pixels of ⌈n/2⌉ of its n label values (ignore included), drawn with
    ``np.random.choice(n, k, replace=False)`` over the sorted values, as trainUDA.py:426-433."""
    masks = []
    for label in labels:
        classes = torch.unique(label)
        n = classes.shape[0]
        chosen = classes[torch.from_numpy(np.random.choice(n, (n + n % 2) // 2, replace=False)).long()]
        masks.append(torch.isin(label, chosen.to(label.device)))
    return torch.stack(masks)


def pixel_weight(max_prob: torch.Tensor, mode: str, threshold: float) -> torch.Tensor:
    """The weight of each target pixel (trainUDA.py:466-472): the batch's fraction above ``threshold``
    (threshold_uniform), the 0/1 mask (threshold), or 1 (none)."""
    confident = max_prob.ge(threshold)
    if mode == "threshold_uniform":
        return torch.full_like(max_prob, confident.sum().item() / max_prob.numel())
    return confident.float() if mode == "threshold" else torch.ones_like(max_prob)


def teacher_labels(ctx, teacher, x_t: torch.Tensor, mode: str, threshold: float):
    """A mean teacher's max probability, hard label and pixel weight of each target pixel, from the target images
    alone (trainUDA.py:418-422, 466-472)."""
    with torch.no_grad(), ctx.autocast():
        prob = ctx.upsample(teacher(x_t).main.float(), x_t.shape[-2:]).softmax(1)
    max_prob, pseudo = prob.max(1)
    return max_prob, pseudo, pixel_weight(max_prob, mode, threshold)


@register
class DACS(Method):
    name = "dacs"
    display_name = "DACS"
    paper = "Tranheden et al., DACS, WACV'21 (§3, Algorithm 1)"
    description = "ClassMix of source classes onto target images, labelled by an EMA teacher"

    @dataclass
    class Hparams:
        lambda_mix: float = setting(1.0, at_least(0))             # consistency_weight (configUDA.json)
        alpha: float = setting(0.99, between(0, 0.999999))        # trainUDA.py:510
        ema_step_offset: int = setting(0, between(0, 1))          # 0: DACS; 1: DAFormer/MIC
        pixel_weight: Literal["threshold_uniform", "threshold", "none"] = "threshold_uniform"
        pseudo_threshold: float = setting(0.968, between(0, 1))   # trainUDA.py:467
        color_jitter: bool = True
        jitter_strength: float = setting(0.25, between(0, 0.5))   # transformsgpu.py:7 (s)
        jitter_skip: float = setting(0.2, between(0, 1))          # jitter when U(0,1) > this (transformsgpu.py:12)
        blur: bool = True                                          # p 0.5, σ ~ U(0.15, 1.15)

    @classmethod
    def check(cls, hparams, suite):
        sizes = {d: tuple(getattr(suite.augment, d).crop or getattr(suite.data, d).size or ()) or None
                 for d in ("source", "target")}
        if None in sizes.values() or sizes["source"] != sizes["target"]:
            shown = ", ".join(f"{d} {'x'.join(map(str, s)) if s else 'native'}" for d, s in sizes.items())
            raise ConfigError(f"{suite.source_file}: {cls.name} pastes source pixels onto target images, so both "
                              f"domains must train at one (W, H) size, but they train at {shown}. Set data.source.size "
                              f"and data.target.size (or augment.source.crop and augment.target.crop) to the same "
                              f"size; the official code crops both to 512x512.")

    def setup(self, model, ctx):
        self.teacher = self.register_teacher("teacher", self.hp.alpha, self.hp.ema_step_offset)

    def source_step(self, source) -> dict[str, float]:
        """The supervised source step (DAFormer adds its feature distance here)."""
        return self.ctx.supervised_step(source)

    def pseudo_labels(self, x_t):
        """``teacher_labels`` of this run's teacher; DAFormer zeroes the weight of some rows, MIC reuses all three."""
        return teacher_labels(self.ctx, self.teacher, x_t, self.hp.pixel_weight, self.hp.pseudo_threshold)

    def train_step(self, source, target, step):
        ctx, hp = self.ctx, self.hp
        x_s, y_s, x_t = source["image"], source["label"], target["image"]
        if x_s.shape != x_t.shape:
            raise ValueError(f"dacs mixes source and target images pixel by pixel, but this step's source batch is "
                             f"{tuple(x_s.shape)} and its target batch {tuple(x_t.shape)}; give both domains the "
                             f"same training size (data.source.size / data.target.size, or equal augment crops).")
        logs = self.source_step(source)
        max_prob, pseudo, target_weight = self.pseudo_labels(x_t)
        mask = class_mix_masks(y_s)
        jitter = random.uniform(0, 1) > hp.jitter_skip if hp.color_jitter else False   # trainUDA.py:445-452
        blur = random.uniform(0, 1) > 0.5 if hp.blur else False
        mixed = torch.where(mask[:, None], x_s, x_t)
        images = []
        for image in mixed.split(1):   # per image, as the official strongTransform
            image = color_jitter(image, hp.jitter_strength) if jitter else image
            images.append(gaussian_blur(image, float(np.random.uniform(0.15, 1.15))) if blur else image)
        label = torch.where(mask, y_s, pseudo)
        weight = torch.where(mask, torch.ones_like(max_prob), target_weight)
        with ctx.autocast():
            logits = ctx.upsample(ctx.model(torch.cat(images)).main.float(), x_t.shape[-2:])
            ce = F.cross_entropy(logits, label, ignore_index=255, reduction="none")
            loss_mix = (ce * weight).mean()
        ctx.backward(hp.lambda_mix * loss_mix)
        return {**logs, "loss_mix": loss_mix.item(), "pseudo_weight": float(target_weight.mean())}
