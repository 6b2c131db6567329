"""AdvEnt — adversarial alignment of weighted self-information maps.

Vu, Jain, Bucher, Cord, Pérez. "ADVENT: Adversarial Entropy Minimization for Domain Adaptation in
Semantic Segmentation", CVPR 2019, §3.2 eq. (6)-(9).

A fully convolutional discriminator D sees weighted self-information maps I = -P·log P / log C
(one channel per class) and tells source (label 0) from target (label 1) with BCE-with-logits
(eq. 7, each domain's term halved as in the official code). The segmenter is trained to make
target maps look like source (eq. 9, λ_adv = 0.001 main / 0.0002 aux, one D per level, D frozen
during that step). D: five 4×4 stride-2 convolutions 64→128→256→512→1 with LeakyReLU(0.2), no
normalisation; Adam 1e-4, betas (0.9, 0.99), with the harness's poly schedule. Maps are computed
on logits up-sampled to each domain's input size. Option: the class-ratio prior (eq. 10).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from udabench import Method, register
from udabench.losses import class_ratio_prior_loss, self_information

SOURCE, TARGET = 0.0, 1.0


def discriminator(in_channels: int, width: int = 64) -> nn.Sequential:
    widths = [in_channels, width, width * 2, width * 4, width * 8]
    layers = []
    for cin, cout in zip(widths, widths[1:]):
        layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], 1, 4, stride=2, padding=1))


def bce(d_logits: torch.Tensor, domain: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(d_logits, torch.full_like(d_logits, domain))


@register
class AdvEnt(Method):
    name = "advent"
    display_name = "AdvEnt"
    paper = "Vu et al., ADVENT, CVPR'19 (§3.2)"
    description = "adversarial training on weighted self-information maps (option: class-ratio prior)"

    @dataclass
    class Hparams:
        lambda_adv: float = 1e-3        # main head
        lambda_adv_aux: float = 2e-4    # auxiliary head
        d_lr: float = 1e-4
        d_betas: tuple[float, float] = (0.9, 0.99)
        d_width: int = 64
        class_prior: bool = False
        cp_mu: float = 0.5
        lambda_cp: float = 1e-3

    def setup(self, model, ctx):
        levels = ["main"] + (["aux"] if model.aux_head is not None else [])
        self.discriminators = {
            level: self.register_module(f"d_{level}", discriminator(ctx.num_classes, self.hp.d_width),
                                        optimizer="adam", lr=self.hp.d_lr, betas=self.hp.d_betas)
            for level in levels}
        self.weights = {"main": self.hp.lambda_adv, "aux": self.hp.lambda_adv_aux}

    def probs(self, out, size) -> dict[str, torch.Tensor]:
        """Softmax maps of every adapted level, at the input size."""
        return {level: self.ctx.upsample(logits.float(), size).softmax(1) for level, logits in out.levels().items()}

    def d_input(self, prob: torch.Tensor) -> torch.Tensor:
        """What D sees of a softmax map: its weighted self-information (AdaptSegNet, methods/advseg.py: the map)."""
        return self_information(prob)

    def d_loss(self, d_out: torch.Tensor, domain: float) -> torch.Tensor:
        return bce(d_out, domain)

    def domain_logits(self, out, image):
        """The main level's discriminator on the image's self-information map (> 0: target, as in training)."""
        prob = self.ctx.upsample(out.main.float(), image.shape[-2:]).softmax(1)
        return self.discriminators["main"](self.d_input(prob))

    def train_step(self, source, target, step):
        ctx = self.ctx
        with ctx.autocast():
            src_out = ctx.model(source["image"])
            loss, logs = ctx.supervised_loss(src_out, source["label"])
            src_probs = self.probs(src_out, source["image"].shape[-2:])
            src_maps = {k: self.d_input(p).detach() for k, p in src_probs.items()}
        ctx.backward(loss)

        # Segmenter step: target maps should fool D (label "source"); D receives no gradient.
        with self.frozen(*self.discriminators.values()):
            with ctx.autocast():
                tgt_probs = self.probs(ctx.model(target["image"]), target["image"].shape[-2:])
                tgt_maps = {k: self.d_input(p) for k, p in tgt_probs.items()}
                adv = sum(self.weights[k] * self.d_loss(d(tgt_maps[k]), SOURCE) for k, d in self.discriminators.items())
                logs["loss_adv"] = adv.item()
                if self.hp.class_prior:
                    cp = class_ratio_prior_loss(tgt_probs["main"], ctx.source_class_histogram(), self.hp.cp_mu)
                    logs["loss_cp"] = cp.item()
                    adv = adv + self.hp.lambda_cp * cp
            ctx.backward(adv)

        # Discriminator step on detached maps: the segmenter receives no gradient.
        with ctx.autocast():
            d_loss = sum(self.d_loss(d(src_maps[k]), SOURCE) / 2 + self.d_loss(d(tgt_maps[k].detach()), TARGET) / 2
                         for k, d in self.discriminators.items())
        logs["loss_d"] = d_loss.item()
        ctx.backward(d_loss)
        return logs
