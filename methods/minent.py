"""MinEnt — direct entropy minimisation on target predictions.

Vu, Jain, Bucher, Cord, Pérez. "ADVENT: Adversarial Entropy Minimization for Domain Adaptation in
Semantic Segmentation", CVPR 2019, §3.1 eq. (2)-(4), §3.3 eq. (10).

    min_F  L_seg(x_s, y_s) + λ_ent · L_ent(x_t)      L_ent = mean over pixels of E(x_t)^(h,w)

with E the per-pixel entropy normalised by log C (eq. 2). λ values are for the *mean* form of the
official code (the paper writes a sum): 0.001 on the main head, 0.0002 on the auxiliary head.
Target logits are up-sampled to the input size before the softmax, as in the official code (``ctx.upsample``).

Options from the paper: ``entropy_ranking`` (ER, §4.2: only the 30 % highest-entropy pixels of each
target image) and ``class_prior`` (CP, eq. 10, μ = 0.5, weighted like the entropy term — the paper
gives no separate weight).
"""

from dataclasses import dataclass

from udabench import Method, register
from udabench.losses import class_ratio_prior_loss, entropy_loss, entropy_ranking_mask


@register
class MinEnt(Method):
    name = "minent"
    display_name = "MinEnt"
    paper = "Vu et al., ADVENT, CVPR'19 (§3.1)"
    description = "entropy minimisation on target predictions (options: ER, class-ratio prior)"

    @dataclass
    class Hparams:
        lambda_ent: float = 1e-3        # main head, mean form
        lambda_ent_aux: float = 2e-4    # auxiliary head (multi-level)
        entropy_ranking: bool = False   # ER
        er_fraction: float = 0.3
        class_prior: bool = False       # CP
        cp_mu: float = 0.5

    def train_step(self, source, target, step):
        logs = self.ctx.supervised_step(source)
        with self.ctx.autocast():
            out = self.ctx.model(target["image"])
            loss = 0.0
            weights = {"main": self.hp.lambda_ent, "aux": self.hp.lambda_ent_aux}
            for level, head in out.levels().items():
                tag = "" if level == "main" else f"_{level}"
                prob = self.ctx.upsample(head.float(), target["image"].shape[-2:]).softmax(1)
                mask = entropy_ranking_mask(prob, self.hp.er_fraction) if self.hp.entropy_ranking else None
                ent = entropy_loss(prob, mask)
                logs[f"loss_ent{tag}"] = ent.item()
                loss = loss + weights[level] * ent
                if self.hp.class_prior:
                    cp = class_ratio_prior_loss(prob, self.ctx.source_class_histogram(), self.hp.cp_mu)
                    logs[f"loss_cp{tag}"] = cp.item()
                    loss = loss + weights[level] * cp
        self.ctx.backward(loss)
        return logs
