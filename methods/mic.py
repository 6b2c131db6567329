"""MIC — masked image consistency, a plug-in for any UDA method.

Hoyer, Dai, Wang, Van Gool. "MIC: Masked Image Consistency for Context-Enhanced Domain Adaptation", CVPR 2023,
§3.2-3.3, eq. (4)-(8). After the host method's own step, per target image x_T:

    M        = [v > r] at block resolution, v ~ U(0, 1) per b×b patch, nearest up-sampled     (eq. 4)
    x_M      = M ⊙ aug(x_T)        (masked pixels 0 in the network's normalised input)
    ŷ_T, q_T = argmax / confidence weight of the EMA teacher's softmax on the unmasked x_T       (eq. 5-7)
    L        = L_host + λ_M · mean_hw [q_T ⊙ CE(f_θ(x_M), ŷ_T)]                                 (eq. 8)

Mask (lhoyer/MIC ``seg/mmseg/models/utils/masking_transforms.py:27-41``): a U(0, 1) draw on an
N×1×round(H/b)×round(W/b) grid, kept where > r, ``resize`` (nearest, mmseg ``ops/wrappers.py:12``) to H×W, the
normalised image multiplied by it; udabench's images are raw 0-255 and normalised by the model, so masked pixels
take the value that normalises to 0. q_T: the batch's fraction of teacher pixels with max probability ≥ τ
(``teacher_module.py:69-80``). aug (``mask_mode`` ``separatetrgaug``, ``masking_consistency_module.py:111-130``):
one U(0, 1) draw for colour jitter (applied when > 0.2, strength 0.2, per image) and one for blur (> 0.5, one σ ~
U(0.15, 1.15) for the batch: ``dacs_transforms.py:52-80``); ``separatetrg`` masks the plain target image. The
masked loss is the main head's CE, the mean over all pixels (ignored ones count 0), × λ_M (``:136-143``).

Teacher: a host with a mean teacher (DACS, DAFormer) shares it, its pseudo-labels and weights — those of the
host's step, after DAFormer's row crop (MIC ``mask_alpha``/``mask_pseudo_threshold`` 'same', ``uda/dacs.py:96-97,
428-433``). Any other host gets one of its own (``require_teacher=True``, ``uda/advseg.py:59-60``), α 0.999 and
τ 0.968 (``configs/_base_/uda/advseg.py:18, 21``, ``minent.py:14, 17``), updated as DAFormer's
(``ema_step_offset`` 1: ``teacher_module.py:96-103`` with the iteration counter).
Defaults: MIC's DeepLab-V2 runs (``seg/experiments.py:417-450``, id 81): b 32, r 0.7, ``separatetrgaug``,
λ_M 1 (``:387``).
"""

import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from udabench.builtin_methods.advseg import AdvSeg
from udabench.builtin_methods.dacs import DACS, teacher_labels
from udabench.builtin_methods.daformer import DAFormer
from udabench.builtin_methods.minent import MinEnt

from udabench import register
from udabench.errors import ConfigError
from udabench.photometric import color_jitter, gaussian_blur
from udabench.schema import at_least, between, setting


def block_mask(n: int, size: tuple[int, int], block: int, ratio: float, device=None) -> torch.Tensor:
    """N×1×H×W, 1 = kept: one U(0, 1) draw per block-grid cell, kept where > ``ratio``, nearest up-sampled."""
    h, w = size
    keep = torch.rand(n, 1, round(h / block), round(w / block), device=device) > ratio
    return F.interpolate(keep.float(), size=(h, w), mode="nearest")


def mask_image(image: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``image`` where ``mask`` is 1, else ``fill`` (the raw pixel that the model's normalisation makes 0)."""
    return torch.where(mask.bool(), image, fill.to(image.dtype))


def normalised_zero(model) -> torch.Tensor:
    """1×3×1×1, RGB 0-255: the pixel the model's input normalisation maps to 0 (MIC zeroes normalised pixels)."""
    norm = getattr(model, "module", model).input_norm
    return norm.mean.flip(1) if norm.bgr else norm.mean


@dataclass
class MicHparams:
    lambda_mic: float = setting(1.0, at_least(0))                  # mask_lambda (experiments.py:387)
    mic_block_size: int = setting(32, at_least(1))                 # experiments.py:450 (DeepLab-V2, 512×512)
    mic_ratio: float = setting(0.7, between(0, 1))                 # experiments.py:428
    mic_mask_mode: Literal["separatetrgaug", "separatetrg"] = "separatetrgaug"   # experiments.py:428
    mic_jitter_strength: float = setting(0.2, between(0, 0.5))     # color_jitter_strength (configs/_base_/uda)
    mic_jitter_skip: float = setting(0.2, between(0, 1))           # jitter when U(0,1) > this (p, same configs)
    mic_blur: bool = True                                          # blur when U(0,1) > 0.5


@dataclass
class MicTeacherHparams(MicHparams):   # for a host without a teacher
    mic_alpha: float = setting(0.999, between(0, 0.999999))        # configs/_base_/uda/advseg.py:18
    mic_ema_step_offset: int = setting(1, between(0, 1))           # teacher_module.py:96-103
    mic_pseudo_threshold: float = setting(0.968, between(0, 1))    # configs/_base_/uda/advseg.py:21


class MaskedConsistency:
    """Mixed in before the host class (``with_mic``): the host's step, then the masked-image step."""

    @classmethod
    def check(cls, hparams, suite):
        super().check(hparams, suite)
        size = suite.augment.target.crop or suite.data.target.size
        if size and 2 * min(size) <= hparams.mic_block_size:   # the mask grid would have no row or column
            raise ConfigError(f"{suite.source_file}: {cls.name} masks the target images in blocks of "
                              f"methods.{cls.name}.mic_block_size = {hparams.mic_block_size} pixels, but they train at "
                              f"{'x'.join(map(str, size))}, under half a block on a side. Lower mic_block_size (MIC: "
                              f"32 for 512x512 crops, 64 for 1024x1024) or train at a larger size.")

    def setup(self, model, ctx):
        super().setup(model, ctx)
        self.shares_teacher = isinstance(self, DACS)
        if not self.shares_teacher:
            self.mic_teacher = self.register_teacher("mic_teacher", self.hp.mic_alpha, self.hp.mic_ema_step_offset)
        self.mic_fill = normalised_zero(model)

    def pseudo_labels(self, x_t):   # a host with a teacher: keep its step's labels and weights for MIC
        self.host_pseudo = super().pseudo_labels(x_t)
        return self.host_pseudo

    def mic_pseudo_labels(self, x_t):
        if self.shares_teacher:
            return self.host_pseudo[1:]
        # the unmasked target image only: no label reaches it
        _, pseudo, weight = teacher_labels(self.ctx, self.mic_teacher, x_t, "threshold_uniform",
                                           self.hp.mic_pseudo_threshold)
        return pseudo, weight

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        hp = self.hp
        jitter, blur = random.uniform(0, 1), random.uniform(0, 1)   # masking_consistency_module.py:122, 125
        if jitter > hp.mic_jitter_skip:
            images = torch.cat([color_jitter(image, hp.mic_jitter_strength) for image in images.split(1)])
        if hp.mic_blur and blur > 0.5:
            images = gaussian_blur(images, float(np.random.uniform(0.15, 1.15)))   # one σ for the batch
        return images

    def train_step(self, source, target, step):
        logs = super().train_step(source, target, step)
        ctx, hp, x_t = self.ctx, self.hp, target["image"]
        pseudo, weight = self.mic_pseudo_labels(x_t)
        image = self.augment(x_t) if hp.mic_mask_mode == "separatetrgaug" else x_t
        mask = block_mask(x_t.shape[0], x_t.shape[-2:], hp.mic_block_size, hp.mic_ratio, x_t.device)
        with ctx.autocast():
            logits = ctx.upsample(ctx.model(mask_image(image, mask, self.mic_fill)).main.float(), x_t.shape[-2:])
            loss = (F.cross_entropy(logits, pseudo, ignore_index=255, reduction="none") * weight).mean()
        ctx.backward(hp.lambda_mic * loss)
        return {**logs, "loss_mic": loss.item()}


def with_mic(host: type, name: str) -> type:
    """``host`` with MIC: registered as ``name``, labelled "<host>+MIC", Hparams the host's and MIC's."""
    extra = MicHparams if issubclass(host, DACS) else MicTeacherHparams
    hparams = dataclass(type("Hparams", (extra, host.Hparams), {"__module__": __name__}))   # host fields first
    return register(type(f"{host.__name__}MIC", (MaskedConsistency, host), {
        "__module__": __name__, "name": name, "display_name": f"{host.display_name}+MIC", "Hparams": hparams,
        "paper": f"{host.paper}; Hoyer et al., MIC, CVPR'23 (§3.2)",
        "description": f"{host.display_name} with masked image consistency (MIC)"}))


DACS_MIC = with_mic(DACS, "dacs_mic")
DAFORMER_MIC = with_mic(DAFormer, "daformer_mic")
MINENT_MIC = with_mic(MinEnt, "minent_mic")
ADVSEG_MIC = with_mic(AdvSeg, "advseg_mic")
