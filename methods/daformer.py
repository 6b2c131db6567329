"""DAFormer's training strategies on DACS — thing-class ImageNet feature distance, pseudo-label crop.

Hoyer, Dai, Van Gool. "DAFormer: Improving Network Architectures and Training Strategies for Domain-Adaptive
Semantic Segmentation", CVPR 2022, §3.3, eq. (6)-(8). On top of DACS (methods/dacs.py), per step:

    L = L_S + λ_FD · L_FD + L_T,    L_FD = mean over {(h,w): M_things(h,w)} of ‖F_θ(x_S) − F_ImageNet(x_S)‖₂

F: the last backbone features (layer4) of the student and of a frozen copy of the *initial* segmenter (the
ImageNet-pretrained backbone when the suite loads ImageNet weights), on the source images only; the copy runs in
eval mode (MIC ``seg/mmseg/models/uda/dacs.py:228-232``). M_things: the source label down-scaled to the feature
grid by ``scale = W_label // W_feat`` (``:236``), each cell taking its majority class where that class covers
≥ ``fd_scale_min_ratio`` of the cell, else ignore (``seg/mmseg/utils/utils.py:18-39``, ignore counted as a class
of its own), kept where that class is a thing class (``dacs.py:241``). ‖·‖₂ over channels per cell (``:173-186``).
Defaults (``seg/configs/_base_/uda/dacs_a999_fdthings.py:10-13``): λ_FD 0.005, thing classes
[6, 7, 11-18] of Cityscapes' 19 (traffic light, sign, person, rider, car, truck, bus, train, motorcycle,
bicycle; mapped onto the run's class set), ratio 0.75, α 0.999. Where no cell is a thing cell the official mean is
NaN with no gradient (``dacs.py:182-185``); here it is 0 with no gradient, as a run stops on a non-finite loss.

The pseudo-label crop: the weight of the top ``psweight_ignore_top`` and bottom ``psweight_ignore_bottom`` rows
of each target crop is 0 (``dacs.py:274-286``: rectification artefacts of Cityscapes), before mixing, so pasted
source pixels there keep weight 1 (``:393-409``). MIC's DeepLab-V2 and DAFormer GTA→Cityscapes runs set 15 and 120
(``seg/experiments.py:252-255, 426``, ``plcrop`` True); the defaults are 0, the DAFormer paper's method.

DAFormer's other values, DACS hyper-parameters here: α 0.999, ``ema_step_offset`` 1 (``dacs.py:315-321``), colour
jitter strength 0.2 (``configs/_base_/uda/dacs.py:21``). Rare-class sampling and the LR warm-up are suite settings
(``train.source_sampler: rare_class``, ``train.warmup_iters``), not part of the method.
"""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from udabench.builtin_methods.dacs import DACS

from udabench import register
from udabench.classes import IGNORE_INDEX
from udabench.schema import at_least, between, setting

THING_CLASSES_19 = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)   # dacs_a999_fdthings.py:12 (Cityscapes train ids)


def downscale_label(label: torch.Tensor, scale: int, min_ratio: float, num_classes: int) -> torch.Tensor:
    """N×H×W labels -> N×(H//scale)×(W//scale): each cell's majority label (ignore a class of its own), or ignore
    where it covers less than ``min_ratio`` of the cell, or where the majority is ignore itself."""
    counts = F.one_hot(label.masked_fill(label == IGNORE_INDEX, num_classes), num_classes + 1).permute(0, 3, 1, 2)
    ratio, majority = F.avg_pool2d(counts.float(), scale).max(1)
    return majority.masked_fill((majority == num_classes) | (ratio < min_ratio), IGNORE_INDEX)


def masked_feature_distance(student: torch.Tensor, imagenet: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked cells of the channel-wise L2 distance; 0 (with a zero gradient) where none is masked."""
    distance = torch.linalg.vector_norm(student - imagenet, dim=1)[mask]
    return distance.sum() / max(distance.numel(), 1)


@register
class DAFormer(DACS):
    name = "daformer"
    display_name = "DAFormer"
    paper = "Hoyer et al., DAFormer, CVPR'22 (§3.3)"
    description = "DACS with thing-class ImageNet feature distance, α 0.999 and the pseudo-label row crop"

    @dataclass
    class Hparams(DACS.Hparams):
        alpha: float = setting(0.999, between(0, 0.999999))          # dacs_a999_fdthings.py:10
        ema_step_offset: int = setting(1, between(0, 1))              # MIC uda/dacs.py:315-321
        jitter_strength: float = setting(0.2, between(0, 0.5))       # configs/_base_/uda/dacs.py:21
        lambda_fd: float = setting(0.005, at_least(0))                # dacs_a999_fdthings.py:11
        fd_classes: tuple[int, ...] = THING_CLASSES_19                # Cityscapes-19 train ids
        fd_scale_min_ratio: float = setting(0.75, between(0, 1))     # dacs_a999_fdthings.py:13
        psweight_ignore_top: int = setting(0, at_least(0))           # 15 in MIC's runs (experiments.py:254)
        psweight_ignore_bottom: int = setting(0, at_least(0))        # 120 in MIC's runs (experiments.py:255)

    def setup(self, model, ctx):
        super().setup(model, ctx)
        # The frozen reference: the segmenter as built (ImageNet weights), before any step or start_from, so it
        # stays ImageNet's even when the run continues another run; checkpointed, never optimised.
        reference = copy.deepcopy(model)
        reference.__dict__.pop("_compiled_call_impl", None)   # compiled on its own (register_module)
        self.imagenet = self.register_module("imagenet", reference, optimizer=None).eval()
        ids19 = ctx.class_set.cityscapes19_ids
        self.things = torch.tensor([ids19.index(c) for c in self.hp.fd_classes if c in ids19], device=ctx.device)

    def source_step(self, source):
        ctx = self.ctx
        with ctx.autocast():
            out = ctx.model(source["image"])
            loss, logs = ctx.supervised_loss(out, source["label"])
            if self.hp.lambda_fd > 0:
                fd = self.feature_distance(source, out.features.float())
                logs["loss_fd"] = fd.item()
                loss = loss + self.hp.lambda_fd * fd
        ctx.backward(loss)   # one backward of the sum = the official two (retain_graph, dacs.py:348, 362)
        return logs

    def feature_distance(self, source, features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = self.imagenet.eval()(source["image"]).features.float()
        label = source["label"]
        cells = downscale_label(label, label.shape[-1] // features.shape[-1], self.hp.fd_scale_min_ratio,
                                self.ctx.num_classes)
        return masked_feature_distance(features, reference, torch.isin(cells, self.things))

    def pseudo_labels(self, x_t):
        max_prob, pseudo, weight = super().pseudo_labels(x_t)
        top, bottom = self.hp.psweight_ignore_top, self.hp.psweight_ignore_bottom
        weight = weight.clone()
        weight[:, :top] = 0
        if bottom:
            weight[:, -bottom:] = 0
        return max_prob, pseudo, weight
