"""Source-only: the lower bound every adaptation method is measured against.

Cross-entropy on labelled source images only (main head, plus the auxiliary head at
``train.seg_aux_weight`` when multi-level).
``uses_target = False``: target images never pass through the model in training, so BN statistics
stay free of target data (AdaptSegNet#25, where a "source-only" run with adversarial weight 0 let
target batches update BN and scored ~5 mIoU higher).
"""

from udabench import Method, register


@register
class SourceOnly(Method):
    name = "source_only"
    display_name = "Source-only"
    role = "lower_bound"
    paper = "baseline (same schedule as every method)"
    description = "supervised cross-entropy on the source domain only"
    uses_target = False

    def train_step(self, source, target, step):
        return self.ctx.supervised_step(source)
