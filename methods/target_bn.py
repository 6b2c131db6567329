"""Target-BN control: source-only training whose BN layers also see target batches (no target loss).

Not a method from the benchmark's papers but the control every UDA row should be read against: any
method that forwards target images in train mode updates BN running statistics with target data
(AdaBN, Li et al., ICLR-W'17; the AdaptSegNet#25 pitfall). This row measures that effect alone, so
gains of MinEnt/AdvEnt/MaxSquare/FADA beyond it are the losses' own. A no-op with ``bn_mode: frozen``.
"""

import torch

from udabench import Method, register


@register
class TargetBN(Method):
    name = "target_bn"
    display_name = "Target-BN control"
    role = "control"
    paper = "control (AdaBN effect; AdaptSegNet#25)"
    description = "source cross-entropy; target batches only update BN statistics"

    def train_step(self, source, target, step):
        logs = self.ctx.supervised_step(source)
        with torch.no_grad(), self.ctx.autocast():
            self.ctx.model(target["image"])
        return logs
