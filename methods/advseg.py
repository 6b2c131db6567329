"""AdaptSegNet (AdvSeg) — adversarial alignment in the output space.

Tsai, Hung, Schulter, Sohn, Yang, Chandraker. "Learning to Adapt Structured Output Space for Semantic
Segmentation", CVPR 2018, §3.1-3.3, eq. (3)-(5):

    L(I_s, I_t) = L_seg(I_s) + λ_adv · L_adv(I_t),    L_adv = −Σ_hw log D(P_t)^(h,w,1)

where the discriminator D sees the softmax map P = softmax(G(I)) itself, one channel per class; AdvEnt
(methods/advent.py) is this loop with D looking at weighted self-information maps instead, so AdvSeg is AdvEnt with
that one input changed: same D (five 4×4 stride-2 convolutions, LeakyReLU 0.2), same multi-level weights (λ_adv
0.001 main, 0.0002 aux: AdaptSegNet ``train_gta2cityscapes_multi.py:52-53``), same Adam 1e-4, betas (0.9, 0.99)
(``:50, 246-249``), D's domain terms halved (``:362-363, 384-385``), maps of logits up-sampled to the input
(``:300-301, 320-321``).

``gan``: the loss D and the segmenter play. ``vanilla`` (BCE with logits) is the paper's and the official default
(``:54, 252-253``); ``ls`` (least squares: MSE to the 0/1 domain label, ``:254-255``) is what MIC's re-run of AdvSeg
trains with (lhoyer/MIC ``seg/configs/_base_/uda/advseg.py:11``, ``seg/mmseg/models/uda/advseg.py:52-57``), with
λ 0.001 / 0.0002 (``advseg.py:15``, config), D lr 1e-4 poly 0.9 (config ``:12-14``), D on the main level only
(MIC's DeepLab-V2 has no auxiliary head: ``model.multi_level: false``).
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from udabench.builtin_methods.advent import AdvEnt

from udabench import register

LS_BOUNDARY = 0.5   # an LS discriminator regresses 0 (source) / 1 (target): above this it says "target"


@register
class AdvSeg(AdvEnt):
    name = "advseg"
    display_name = "AdvSeg"
    paper = "Tsai et al., AdaptSegNet, CVPR'18 (§3)"
    description = "adversarial training on the softmax output maps (AdaptSegNet)"

    @dataclass
    class Hparams(AdvEnt.Hparams):
        gan: Literal["vanilla", "ls"] = "vanilla"   # ls: MIC's re-run (configs/_base_/uda/advseg.py:11)

    def d_input(self, prob: torch.Tensor) -> torch.Tensor:
        return prob   # the output space itself (eq. 4), not its self-information

    def d_loss(self, d_out: torch.Tensor, domain: float) -> torch.Tensor:
        if self.hp.gan == "ls":
            return F.mse_loss(d_out, torch.full_like(d_out, domain))
        return super().d_loss(d_out, domain)

    def domain_logits(self, out, image):
        d_out = super().domain_logits(out, image)
        return d_out - LS_BOUNDARY if self.hp.gan == "ls" else d_out
