"""MaxSquare and MaxSquare+IW — maximum squares loss with image-wise class-balanced weighting.

Chen, Xue, Cai. "Domain Adaptation for Semantic Segmentation with Maximum Squares Loss", ICCV 2019.
Maximum squares (§3.2): L_T = -(1/2N) Σ_n Σ_c p_{n,c}², whose gradient grows linearly with the
probability instead of the entropy's, so easy, confident pixels do not dominate. Image-wise
class-balanced weighting (§3.3, eq. 13): each class term of an image is divided by
(N^c)^α N^(1−α), N^c = pixels predicted as c, α = 0.2. ``weight_by="channel"`` is the paper form,
``"pixel_argmax"`` the official code's (see ``udabench.losses.iw_maxsquare_loss``).
Multi-level self-guided variant (§3.4, ``self_guided``): the auxiliary head is trained with CE on
pseudo-labels = argmax of the averaged main and auxiliary softmaxes, where either head is more
confident than 0.95, weighted λ_seg·λ_target as in the official code.

λ: ``lambda_target`` is given on the official code's scale (0.1; 0.09 with self-guidance). The code
averages p² over N·C·H·W (= our paper-form value / C) for plain MaxSquare, and computes IW as
Σ p²·w / C without the ½ (= our value · 2/C); the effective weights below convert accordingly, so
the same λ gives the official runs' gradient scale.
"""

from dataclasses import dataclass
from typing import Literal

import torch

from udabench import ConfigError, Method, register
from udabench.classes import IGNORE_INDEX
from udabench.losses import iw_maxsquare_loss, maxsquare_loss, segmentation_loss


@register
class MaxSquare(Method):
    name = "maxsquare"
    display_name = "MaxSquare"
    paper = "Chen et al., Maximum Squares Loss, ICCV'19"
    description = "maximum squares loss on target predictions (options: IW weighting, self-guided multi-level)"
    image_wise = False

    @dataclass
    class Hparams:
        lambda_target: float = 0.1      # official-code scale, converted below
        alpha: float = 0.2              # IW exponent
        weight_by: Literal["channel", "pixel_argmax"] = "channel"   # paper | official code
        self_guided: bool = False       # multi-level self-produced guidance on the aux head
        threshold: float = 0.95
        lambda_seg_aux: float = 0.1     # λ_seg of the guidance term (× lambda_target)

    @classmethod
    def check(cls, hparams, suite):
        if hparams.self_guided and not suite.model.multi_level:
            raise ConfigError(f"{suite.source_file}: methods.{cls.name}.self_guided trains the auxiliary head on the "
                              f"heads' joint pseudo-labels, but model.multi_level is false (no auxiliary head). Set "
                              f"model.multi_level: true, or self_guided: false.")

    def setup(self, model, ctx):
        # Official-scale λ -> weight on our paper-normalised losses (see module docstring).
        self.weight = self.hp.lambda_target * (2 if self.image_wise else 1) / ctx.num_classes

    def train_step(self, source, target, step):
        logs = self.ctx.supervised_step(source)
        size = target["image"].shape[-2:]
        with self.ctx.autocast():
            out = self.ctx.model(target["image"])
            prob = self.ctx.upsample(out.main.float(), size).softmax(1)
            if self.image_wise:
                target_loss = iw_maxsquare_loss(prob, self.hp.alpha, self.hp.weight_by)
            else:
                target_loss = maxsquare_loss(prob)
            logs["loss_target"] = target_loss.item()
            loss = self.weight * target_loss
            if self.hp.self_guided:
                aux_logits = self.ctx.upsample(out.aux.float(), size)
                guide = self_guided_labels(prob.detach(), aux_logits.detach().softmax(1), self.hp.threshold)
                guided = segmentation_loss(aux_logits, guide)   # 0 when no pixel is confident enough
                logs["loss_guided"] = guided.item()
                loss = loss + self.hp.lambda_seg_aux * self.hp.lambda_target * guided
        self.ctx.backward(loss)
        return logs


@register
class MaxSquareIW(MaxSquare):
    name = "maxsquare_iw"
    display_name = "MaxSquare+IW"
    description = "maximum squares loss with image-wise class-balanced weighting (α = 0.2)"
    image_wise = True


def self_guided_labels(main: torch.Tensor, aux: torch.Tensor, threshold: float) -> torch.Tensor:
    """Argmax of the averaged heads where either head's confidence exceeds ``threshold``, else ignore."""
    labels = ((main + aux) / 2).argmax(1)
    confident = (main.amax(1) > threshold) | (aux.amax(1) > threshold)
    return labels.masked_fill(~confident, IGNORE_INDEX)
