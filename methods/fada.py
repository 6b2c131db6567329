"""FADA — fine-grained, class-aware adversarial feature alignment.

Wang, Shen, Zhang, Chen, Wu, Tian. "Classes Matter: A Fine-grained Adversarial Approach to
Cross-domain Semantic Segmentation", ECCV 2020, §3.2-3.3 (eq. 4-7).

The discriminator sees layer4 features and predicts 2K logits: K "source" and K "target" class
channels (a domain × class output). Its targets are *domain encodings*: soft labels
a = softmax(logits / T), T = 1.8, detached and clipped at 0.9 (no renormalisation), placed in the
source half ([a; 0]) or the target half ([0; a]); the loss is a soft cross-entropy over the 2K
channels (eq. 5/6). D step: source and target features (detached), each term × 0.5. Segmenter step:
target features labelled as source ([a_t; 0]), λ_adv = 0.001 (eq. 7); only the feature extractor
is in that path. D: 3×3 convs 2048→256→128 (LeakyReLU 0.2) and two 3×3 heads 128→K, concatenated;
Adam 1e-4, betas (0.9, 0.99).

Departures, both options whose official value the FADA recipes set: the official code divides the *source*
logits by T before the supervised CE (``temperature_on_source_ce``, off by default — the paper does not); it
up-samples D outputs and the logits of the soft labels to the input size (``train_adv.py:170,182,189,199,203``,
``discriminator.py:51-58``: ``loss_resolution: input``, with ``train.align_corners``), where udabench compares
them on the feature grid, where the logits already are (``feature``: same targets, 64× fewer pixels).

Self-distillation (§3.4) is a stage of its own, as in the official code (``train_self_distill.py``): the
method ``self_distill`` with ``teacher: fada`` trains a fresh model on this run's hard pseudo-labels
(methods/self_distill.py, docs/recipes.md).
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from udabench import Method, register
from udabench.losses import fada_soft_labels, fine_grained_adversarial_loss


class FineGrainedDiscriminator(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width // 2, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.source_head = nn.Conv2d(width // 2, num_classes, 3, padding=1)
        self.target_head = nn.Conv2d(width // 2, num_classes, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.body(features)
        return torch.cat([self.source_head(h), self.target_head(h)], dim=1)


@register
class FADA(Method):
    name = "fada"
    display_name = "FADA"
    paper = "Wang et al., Classes Matter (FADA), ECCV'20"
    description = "fine-grained class-aware adversarial alignment of layer4 features"

    @dataclass
    class Hparams:
        lambda_adv: float = 1e-3
        temperature: float = 1.8
        clip: float = 0.9
        d_loss_weight: float = 0.5
        d_lr: float = 1e-4
        d_betas: tuple[float, float] = (0.9, 0.99)
        d_width: int = 256
        temperature_on_source_ce: bool = False   # official-code form
        loss_resolution: Literal["feature", "input"] = "feature"   # input: the official code's

    def setup(self, model, ctx):
        channels = model.backbone.feature_info.channels()[-1]
        self.d = self.register_module("d_fine", FineGrainedDiscriminator(channels, ctx.num_classes, self.hp.d_width),
                                      optimizer="adam", lr=self.hp.d_lr, betas=self.hp.d_betas)

    def discriminate(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        return self.at_loss_resolution(self.d(features), batch)

    def domain_logits(self, out, image):
        """log P(target) − log P(source) of each location: the mass of the target half of D's 2K-way softmax
        against the source half's."""
        d = self.discriminate(out.features, {"image": image}).float()
        k = d.shape[1] // 2
        return d[:, k:].logsumexp(1) - d[:, :k].logsumexp(1)

    def at_loss_resolution(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Logits (of the segmenter or of D) where the adversarial losses compare them: the feature grid, or the
        batch's input size."""
        return self.ctx.upsample(logits, batch["image"].shape[-2:]) if self.hp.loss_resolution == "input" else logits

    def train_step(self, source, target, step):
        ctx, hp = self.ctx, self.hp
        with ctx.autocast():
            src = ctx.model(source["image"])
            src_soft = fada_soft_labels(self.at_loss_resolution(src.main, source), hp.temperature, hp.clip)
            ce_input = src._replace(main=src.main / hp.temperature) if hp.temperature_on_source_ce else src
            loss, logs = ctx.supervised_loss(ce_input, source["label"])
            src_features = src.features.detach()
        ctx.backward(loss)

        # Segmenter step: target features should be classified as "source, class a_t"; D gets no gradient.
        with self.frozen(self.d):
            with ctx.autocast():
                tgt = ctx.model(target["image"])
                tgt_soft = fada_soft_labels(self.at_loss_resolution(tgt.main, target), hp.temperature, hp.clip)
                adv = fine_grained_adversarial_loss(self.discriminate(tgt.features, target), tgt_soft, "source")
            logs["loss_adv"] = adv.item()
            ctx.backward(hp.lambda_adv * adv)

        # Discriminator step on detached features: the segmenter gets no gradient.
        with ctx.autocast():
            d_src = self.discriminate(src_features, source)
            d_tgt = self.discriminate(tgt.features.detach(), target)
            d_loss = hp.d_loss_weight * (fine_grained_adversarial_loss(d_src, src_soft, "source")
                                         + fine_grained_adversarial_loss(d_tgt, tgt_soft, "target"))
        logs["loss_d"] = d_loss.item()
        ctx.backward(d_loss)
        return logs
