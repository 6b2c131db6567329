"""Self-distillation: a student trained on a frozen teacher run's hard pseudo-labels of the target images.

FADA §3.4 and its official third stage (``train_self_distill.py``, ``train_with_sd.sh``): the finished
adaptation model labels every target train image with its argmax, no threshold (FADA issue #21), and a
*fresh* model (the init weights, not the adapted ones: the script passes no ``resume``) is trained on those
labels alone with the supervised cross-entropy, its own augmentation (scale 0.5-1.5, 1024×512 crops, flip,
colour jitter), batch, LR (5e-4) and schedule (poly over 31,250, stopped at 20,000). The suite names the
teacher, a method of the same suite whose run of the same seed must be finished:
``stages: {self_distill: {teacher: fada, train: {...}, augment: {target: {...}}}}`` (docs/recipes.md). The
harness computes the labels (``engine/pseudo.py``); source images and target labels never reach the student.
"""

from udabench import Method, register


@register
class SelfDistill(Method):
    name = "self_distill"
    display_name = "Self-distillation"
    paper = "Wang et al., FADA, ECCV'20, §3.4 (stage 3 of the official code)"
    description = "a fresh model trained on a teacher run's hard pseudo-labels of the target images"
    uses_source = False
    uses_teacher_labels = True

    def train_step(self, source, target, step):
        return self.ctx.supervised_step({"image": target["image"], "label": target["pseudo_label"]})
