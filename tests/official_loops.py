"""The official training loops, restated for the trajectory tests from what the official code does.

Written from the official sources' behaviour (file:line at the snapshots of docs/recipes.md), not from udabench's
modules: each ``*_step`` is one iteration of the official loop on official-layout networks (``reference_nets``),
with the official optimizers and losses:

- ``TorchSGD04``: ``torch.optim.SGD`` as PyTorch 0.4.1-1.x stepped a group entry by entry (the authors' versions:
  ADVENT's Dockerfile, MaxSquare's README), which matters where a group lists a tensor more than once;
- ``deeplab_1x_params``: the Pytorch-Deeplab lineage's 1× group (ADVENT ``deeplabv2.py:131-153``, MaxSquare
  ``deeplab_multi.py:132-154``): every module of each top-level trunk block, every trainable tensor below it;
- ADVENT ``train_UDA.py:218-313`` (MinEnt) and ``:85-178`` (AdvEnt); MaxSquare ``solve_gta5.py:201-281``;
  FADA ``train_adv.py:144-209`` and ``train_self_distill.py:124-142``; DACS ``trainUDA.py:367-511`` with its
  ``utils/transformmasks.py``, ``utils/transformsgpu.py`` and ``utils/loss.py`` pieces.
Up-sampling is bilinear with ``align_corners=True`` everywhere, as in all three codes.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = 255


def interp(logits, size):
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)


def poly(base, i, max_iters, power=0.9):
    return base * (1 - i / max_iters) ** power


class TorchSGD04:
    """SGD with momentum and weight decay, one entry of a group at a time (PyTorch 0.4.1 ``sgd.py``): ``d_p`` is the
    gradient itself, weight decay is added to it in place, the buffer starts as zeros · momentum + d_p."""

    def __init__(self, groups: list[list[torch.Tensor]], lrs: list[float], momentum: float, weight_decay: float):
        self.groups, self.lrs, self.momentum, self.weight_decay = groups, list(lrs), momentum, weight_decay
        self.buffers: dict[int, torch.Tensor] = {}

    def zero_grad(self):
        for group in self.groups:
            for p in group:
                p.grad = None

    @torch.no_grad()
    def step(self):
        for group, lr in zip(self.groups, self.lrs):
            for p in group:
                if p.grad is None:
                    continue
                d_p = p.grad
                d_p.add_(p, alpha=self.weight_decay)
                if id(p) not in self.buffers:
                    self.buffers[id(p)] = torch.zeros_like(p)
                buf = self.buffers[id(p)]
                buf.mul_(self.momentum).add_(d_p)
                p.add_(buf, alpha=-lr)


def deeplab_1x_params(trunk_blocks: list[nn.Module]) -> list[torch.Tensor]:
    """The lineage's 1× list: for each block, each of its modules (itself first), each trainable tensor below."""
    return [p for block in trunk_blocks for module in block.modules() for p in module.parameters() if p.requires_grad]


def official_deeplab_sgd(model, lr, momentum=0.9, weight_decay=5e-4) -> TorchSGD04:
    trunk = [model.conv1, model.bn1, model.layer1, model.layer2, model.layer3, model.layer4]
    heads = [p for name in ("layer5", "layer6") if hasattr(model, name) for p in getattr(model, name).parameters()]
    return TorchSGD04([deeplab_1x_params(trunk), heads], [lr, 10 * lr], momentum, weight_decay)


def set_lrs(opt: TorchSGD04, lr: float) -> None:
    opt.lrs = [lr, 10 * lr]


def cross_entropy(logits, label):
    return F.cross_entropy(logits, label, ignore_index=IGNORE)


# ---- ADVENT ------------------------------------------------------------------------------------------------------

def prob_2_entropy(prob):
    c = prob.shape[1]
    return -prob * torch.log2(prob + 1e-30) / math.log2(c)


def advent_entropy_loss(prob):
    n, c, h, w = prob.shape
    return -(prob * torch.log2(prob + 1e-30)).sum() / (n * h * w * math.log2(c))


def advent_discriminator(num_classes, ndf=64):
    return nn.Sequential(
        nn.Conv2d(num_classes, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 2, 1))


def bce(d_out, label):
    return F.binary_cross_entropy_with_logits(d_out, torch.full_like(d_out, label))


def advent_minent_step(model, opt, i, src, tgt, cfg) -> dict:
    set_lrs(opt, poly(cfg["lr"], i, cfg["max_iters"]))
    opt.zero_grad()
    aux, main = model(src["image"])
    seg_main = cross_entropy(interp(main, src["label"].shape[-2:]), src["label"])
    seg_aux = cross_entropy(interp(aux, src["label"].shape[-2:]), src["label"])
    t_aux, t_main = model(tgt["image"])
    size = tgt["image"].shape[-2:]
    ent_aux = advent_entropy_loss(F.softmax(interp(t_aux, size), dim=1))
    ent_main = advent_entropy_loss(F.softmax(interp(t_main, size), dim=1))
    loss = seg_main + cfg["lambda_seg_aux"] * seg_aux + cfg["lambda_ent_aux"] * ent_aux + cfg["lambda_ent"] * ent_main
    loss.backward()
    opt.step()
    return {"loss_seg": seg_main.item(), "loss_seg_aux": seg_aux.item(), "loss_ent": ent_main.item(),
            "loss_ent_aux": ent_aux.item()}


def advent_advent_step(model, discriminators, opt, d_opts, i, src, tgt, cfg) -> dict:
    set_lrs(opt, poly(cfg["lr"], i, cfg["max_iters"]))
    opt.zero_grad()
    for d_opt in d_opts:
        d_opt.zero_grad()
        for group in d_opt.param_groups:
            group["lr"] = poly(cfg["d_lr"], i, cfg["max_iters"])
    for d in discriminators.values():
        d.requires_grad_(False)
    s_size, t_size = src["label"].shape[-2:], tgt["image"].shape[-2:]
    s_aux, s_main = (interp(x, s_size) for x in model(src["image"]))
    seg_main, seg_aux = cross_entropy(s_main, src["label"]), cross_entropy(s_aux, src["label"])
    (seg_main + cfg["lambda_seg_aux"] * seg_aux).backward()
    t_aux, t_main = (interp(x, t_size) for x in model(tgt["image"]))
    preds = {"aux": (s_aux, t_aux), "main": (s_main, t_main)}
    adv = {k: bce(discriminators[k](prob_2_entropy(F.softmax(preds[k][1], dim=1))), 0.0) for k in preds}
    (cfg["lambda_adv"] * adv["main"] + cfg["lambda_adv_aux"] * adv["aux"]).backward()
    for d in discriminators.values():
        d.requires_grad_(True)
    d_loss = 0.0
    for which, label in ((0, 0.0), (1, 1.0)):   # source maps, then target maps, each term halved
        for k in ("aux", "main"):
            loss = bce(discriminators[k](prob_2_entropy(F.softmax(preds[k][which].detach(), dim=1))), label) / 2
            loss.backward()
            d_loss += loss.item()
    opt.step()
    for d_opt in d_opts:
        d_opt.step()
    return {"loss_seg": seg_main.item(), "loss_seg_aux": seg_aux.item(),
            "loss_adv": (cfg["lambda_adv"] * adv["main"] + cfg["lambda_adv_aux"] * adv["aux"]).item(),
            "loss_d": d_loss}


# ---- MaxSquare ---------------------------------------------------------------------------------------------------

def maxsquare_loss(prob):
    return -(prob ** 2).mean() / 2


def iw_maxsquare_loss(prob, num_classes, ratio=0.2):
    """``IW_MaxSquareloss``: per image, the histogram of argmax classes; each pixel's every channel weighted by
    1 / max(N_c^ratio · N^(1 − ratio), 1) of its argmax class c; the sum over N·C."""
    n = prob.shape[0]
    argmax = prob.detach().argmax(1)
    weights = []
    for k in range(n):
        hist = torch.bincount(argmax[k].flatten(), minlength=num_classes).float()
        per_class = 1 / torch.clamp(hist ** ratio * hist.sum() ** (1 - ratio), min=1)
        weights.append(per_class[argmax[k]])
    weights = torch.stack(weights).unsqueeze(1)
    return -(prob ** 2 * weights).sum() / (n * num_classes)


def maxsquare_step(model, opt, i, src, tgt, cfg) -> dict:
    """``solve_gta5.py`` one iteration: the model's outputs are already up-sampled (``deeplab_multi.py:124,128``)."""
    set_lrs(opt, poly(cfg["lr"], i, cfg["max_iters"]))
    s_aux, s_main = (None if x is None else interp(x, src["image"].shape[-2:]) for x in model(src["image"]))
    seg = cross_entropy(s_main, src["label"])
    loss = seg + (cfg["lambda_seg"] * cross_entropy(s_aux, src["label"]) if cfg["multi"] else 0)
    loss.backward()
    t_aux, t_main = (None if x is None else interp(x, tgt["image"].shape[-2:]) for x in model(tgt["image"]))
    prob = F.softmax(t_main, dim=1)
    target = (iw_maxsquare_loss(prob, cfg["num_classes"]) if cfg["iw"] else maxsquare_loss(prob))
    loss = cfg["lambda_target"] * target
    logs = {"loss_seg": seg.item(), "loss_target_weighted": loss.item()}
    if cfg["multi"]:
        prob_2 = F.softmax(t_aux, dim=1)
        confident = (prob.detach().amax(1) > cfg["threshold"]) | (prob_2.detach().amax(1) > cfg["threshold"])
        guide = ((prob.detach() + prob_2.detach()) / 2).argmax(1).masked_fill(~confident, IGNORE)
        guided = cross_entropy(t_aux, guide) if confident.any() else t_aux.sum() * 0
        loss = loss + cfg["lambda_seg"] * cfg["lambda_target"] * guided
        logs["loss_guided"] = guided.item()
    loss.backward()
    opt.step()
    opt.zero_grad()
    return logs


# ---- FADA --------------------------------------------------------------------------------------------------------

class FrozenBatchNorm2d(nn.Module):
    """FADA ``core/models/layers.py:5-23``: affine and statistics as buffers, no epsilon."""

    def __init__(self, n):
        super().__init__()
        for name, value in (("weight", torch.ones(n)), ("bias", torch.zeros(n)), ("running_mean", torch.zeros(n)),
                            ("running_var", torch.ones(n))):
            self.register_buffer(name, value)

    def forward(self, x):
        scale = self.weight * self.running_var.rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


class FadaSegmenter(nn.Module):
    """FADA's feature extractor (torchvision ResNet, strides of layer3/4 replaced by dilation) and ASPP classifier
    (four summed branches, logits up-sampled to ``size``)."""

    def __init__(self, layers, num_classes, frozen_bn=True):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        self.trunk = ResNet(Bottleneck, list(layers), replace_stride_with_dilation=[False, True, True], norm_layer=norm)
        del self.trunk.fc
        self.classifier = nn.ModuleList(nn.Conv2d(2048, num_classes, 3, padding=d, dilation=d) for d in (6, 12, 18, 24))

    def features(self, x):
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        return t.layer4(t.layer3(t.layer2(t.layer1(x))))

    def classify(self, features, size):
        return interp(sum(conv(features) for conv in self.classifier), size)


class PixelDiscriminator(nn.Module):
    """FADA ``discriminator.py:38-58``: two 3×3 convolutions with LeakyReLU, two class heads concatenated (source
    half first), up-sampled to ``size``."""

    def __init__(self, in_channels, num_classes, ndf=256):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, ndf, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(ndf, ndf // 2, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))
        self.cls1 = nn.Conv2d(ndf // 2, num_classes, 3, padding=1)
        self.cls2 = nn.Conv2d(ndf // 2, num_classes, 3, padding=1)

    def forward(self, x, size):
        h = self.body(x)
        return interp(torch.cat([self.cls1(h), self.cls2(h)], dim=1), size)


def soft_label_cross_entropy(pred, soft):
    return (-soft * F.log_softmax(pred, dim=1)).sum(1).mean()


def fada_sgd(model, lr) -> TorchSGD04:
    """Two optimizers (feature extractor at lr, classifier at 10 lr) of plain ``.parameters()``, as one."""
    return TorchSGD04([[p for p in model.trunk.parameters() if p.requires_grad], list(model.classifier.parameters())],
                      [lr, 10 * lr], 0.9, 5e-4)


def fada_adversarial_step(model, disc, opt, d_opt, i, src, tgt, cfg) -> dict:
    set_lrs(opt, poly(cfg["lr"], i, cfg["max_iters"]))
    for group in d_opt.param_groups:
        group["lr"] = poly(cfg["d_lr"], i, cfg["max_iters"])
    opt.zero_grad()
    d_opt.zero_grad()
    s_size, t_size = src["image"].shape[-2:], tgt["image"].shape[-2:]
    s_fea = model.features(src["image"])
    s_pred = model.classify(s_fea, s_size) / cfg["temperature"]
    seg = cross_entropy(s_pred, src["label"])
    seg.backward()
    s_soft = F.softmax(s_pred, dim=1).detach().clamp(max=cfg["clip"])
    t_fea = model.features(tgt["image"])
    t_pred = model.classify(t_fea, t_size) / cfg["temperature"]
    t_soft = F.softmax(t_pred, dim=1).detach().clamp(max=cfg["clip"])
    adv = soft_label_cross_entropy(disc(t_fea, t_size), torch.cat([t_soft, torch.zeros_like(t_soft)], dim=1))
    (cfg["lambda_adv"] * adv).backward()
    opt.step()
    d_opt.zero_grad()   # the discriminator's gradients of the adversarial term are discarded (train_adv.py:196)
    d_src = 0.5 * soft_label_cross_entropy(disc(s_fea.detach(), s_size), torch.cat([s_soft, torch.zeros_like(s_soft)], 1))
    d_src.backward()
    d_tgt = 0.5 * soft_label_cross_entropy(disc(t_fea.detach(), t_size), torch.cat([torch.zeros_like(t_soft), t_soft], 1))
    d_tgt.backward()
    d_opt.step()
    return {"loss_seg": seg.item(), "loss_adv": adv.item(), "loss_d": d_src.item() + d_tgt.item()}


def fada_student_step(model, opt, i, batch, cfg) -> dict:
    set_lrs(opt, poly(cfg["lr"], i, cfg["max_iters"]))
    opt.zero_grad()
    pred = model.classify(model.features(batch["image"]), batch["image"].shape[-2:])
    loss = cross_entropy(pred, batch["label"])
    loss.backward()
    opt.step()
    return {"loss_seg": loss.item()}


# ---- DACS (vikolss/DACS) ------------------------------------------------------------------------------------------

def dacs_update_ema(ema_model, model, alpha_teacher, iteration):
    """``trainUDA.py:111-121`` (single GPU branch)."""
    alpha_teacher = min(1 - 1 / (iteration + 1), alpha_teacher)
    for ema_param, param in zip(ema_model.parameters(), model.parameters()):
        ema_param.data[:] = alpha_teacher * ema_param[:].data[:] + (1 - alpha_teacher) * param[:].data[:]


def dacs_class_masks(labels):
    """``trainUDA.py:425-435`` with ``transformmasks.generate_class_mask``, for any batch size."""
    masks = []
    for image_i in range(labels.shape[0]):
        classes = torch.unique(labels[image_i])
        nclasses = classes.shape[0]
        classes = classes[torch.Tensor(np.random.choice(nclasses, int((nclasses + nclasses % 2) / 2),
                                                        replace=False)).long()]
        pred, classes = torch.broadcast_tensors(labels[image_i].unsqueeze(0), classes.unsqueeze(1).unsqueeze(2))
        masks.append(pred.eq(classes).sum(0).unsqueeze(0))
    return masks


def dacs_one_mix(mask, data=None, target=None):
    """``transformsgpu.oneMix``."""
    if data is not None:
        m, _ = torch.broadcast_tensors(mask[0], data[0])
        data = (m * data[0] + (1 - m) * data[1]).unsqueeze(0)
    if target is not None:
        m, _ = torch.broadcast_tensors(mask[0], target[0])
        target = (m * target[0] + (1 - m) * target[1]).unsqueeze(0)
    return data, target


def kornia_gaussian_blur(data, kernel_size, sigma):
    """``kornia.filters.GaussianBlur2d((ky, kx), (σ, σ))``, border 'reflect': the 2-D kernel, one convolution."""
    def kernel1d(k):
        x = torch.arange(k).float() - k // 2
        g = torch.exp(-x.pow(2.0) / float(2 * sigma ** 2))
        return g / g.sum()
    ky, kx = kernel_size
    kernel = torch.outer(kernel1d(ky), kernel1d(kx))
    padded = F.pad(data, [(kx - 1) // 2, (kx - 1) // 2, (ky - 1) // 2, (ky - 1) // 2], mode="reflect")
    return F.conv2d(padded, kernel.expand(data.shape[1], 1, ky, kx), groups=data.shape[1])


def dacs_gaussian_blur(blur, data):
    """``transformsgpu.gaussian_blur``: kernel sizes from the image, σ ~ U(0.15, 1.15)."""
    if blur > 0.5:
        sigma = np.random.uniform(0.15, 1.15)
        ky = int(np.floor(np.ceil(0.1 * data.shape[2]) - 0.5 + np.ceil(0.1 * data.shape[2]) % 2))
        kx = int(np.floor(np.ceil(0.1 * data.shape[3]) - 0.5 + np.ceil(0.1 * data.shape[3]) % 2))
        data = kornia_gaussian_blur(data, (ky, kx), sigma)
    return data


def dacs_step(model, ema_model, opt, i, src, tgt, cfg) -> dict:
    """One iteration of ``trainUDA.py:367-511`` (batch of any size; flip off; colour jitter as ``cfg``: the restated
    loop has no kornia, so only without it), the networks returning (aux, main) with main the single head."""
    set_lrs(opt, poly(cfg["lr"], i, cfg["max_iters"]))
    opt.zero_grad()
    images, labels, images_remain = src["image"], src["label"], tgt["image"]
    size = images.shape[-2:]
    L_l = cross_entropy(interp(model(images)[1], size), labels)
    logits_u_w = interp(ema_model(images_remain)[1], size)
    pseudo_label = torch.softmax(logits_u_w.detach(), dim=1)
    max_probs, targets_u_w = torch.max(pseudo_label, dim=1)
    masks = dacs_class_masks(labels)
    assert not cfg["color_jitter"]
    blur = random.uniform(0, 1) if cfg["blur"] else 0
    inputs_u_s = torch.cat([dacs_gaussian_blur(blur, dacs_one_mix(m, data=torch.stack((images[k], images_remain[k])))[0])
                            for k, m in enumerate(masks)])
    logits_u_s = interp(model(inputs_u_s)[1], size)
    targets_u = torch.cat([dacs_one_mix(m, target=torch.stack((labels[k], targets_u_w[k])))[1]
                           for k, m in enumerate(masks)]).long()
    unlabeled_weight = torch.sum(max_probs.ge(0.968).long() == 1).item() / np.size(targets_u.cpu().numpy())
    pixel = unlabeled_weight * torch.ones(max_probs.shape)
    pixel = torch.cat([dacs_one_mix(m, target=torch.stack((torch.ones_like(pixel[k]), pixel[k])))[1]
                       for k, m in enumerate(masks)])
    ce = F.cross_entropy(logits_u_s, targets_u, ignore_index=IGNORE, reduction="none")
    L_u = cfg["consistency_weight"] * torch.mean(ce * pixel)
    (L_l + L_u).backward()
    opt.step()
    dacs_update_ema(ema_model, model, cfg["alpha"], i)
    return {"loss_seg": L_l.item(), "loss_mix": L_u.item() / cfg["consistency_weight"], "pseudo_weight": unlabeled_weight}


# ---- lhoyer/MIC (seg/mmseg): MIC's mask and teacher weight, DAFormer's feature distance, AdvSeg's D input ---------

def mic_mask_image(imgs, mask_ratio, mask_block_size):
    """masking_transforms.py:27-41: a U(0,1) grid of round(H/b)×round(W/b), > ratio, mmseg ``resize`` (nearest) to
    H×W, times the (normalised) images."""
    B, _, H, W = imgs.shape
    mshape = B, 1, round(H / mask_block_size), round(W / mask_block_size)
    input_mask = torch.rand(mshape, device=imgs.device)
    input_mask = (input_mask > mask_ratio).float()
    input_mask = F.interpolate(input_mask, (H, W), None, "nearest", None)
    return imgs * input_mask, input_mask


def mic_pseudo_label_and_weight(logits, pseudo_threshold, ignore_top=0, ignore_bottom=0):
    """teacher_module.py:69-94 (and uda/dacs.py:264-286): the argmax, the batch's confident fraction everywhere,
    the top/bottom rows zeroed."""
    ema_softmax = torch.softmax(logits.detach(), dim=1)
    pseudo_prob, pseudo_label = torch.max(ema_softmax, dim=1)
    ps_large_p = pseudo_prob.ge(pseudo_threshold).long() == 1
    ps_size = np.size(pseudo_label.cpu().numpy())
    pseudo_weight = torch.sum(ps_large_p).item() / ps_size
    pseudo_weight = pseudo_weight * torch.ones(pseudo_prob.shape, device=logits.device)
    if ignore_top > 0:
        pseudo_weight[:, :ignore_top, :] = 0
    if ignore_bottom > 0:
        pseudo_weight[:, -ignore_bottom:, :] = 0
    return pseudo_label, pseudo_weight


def mmseg_weighted_ce(seg_logit, seg_label, seg_weight):
    """mmseg's decode-head CE with ``seg_weight``: per pixel, times the weight, mean over every pixel."""
    loss = F.cross_entropy(seg_logit, seg_label, reduction="none", ignore_index=IGNORE)
    return (loss * seg_weight).mean()


def downscale_label_ratio(gt, scale_factor, min_ratio, n_classes, ignore_index=255):
    """seg/mmseg/utils/utils.py:18-39 (N×1×H×W labels)."""
    bs, orig_c, orig_h, orig_w = gt.shape
    trg_h, trg_w = orig_h // scale_factor, orig_w // scale_factor
    ignore_substitute = n_classes
    out = gt.clone()
    out[out == ignore_index] = ignore_substitute
    out = F.one_hot(out.squeeze(1), num_classes=n_classes + 1).permute(0, 3, 1, 2)
    out = F.avg_pool2d(out.float(), kernel_size=scale_factor)
    gt_ratio, out = torch.max(out, dim=1, keepdim=True)
    out[out == ignore_substitute] = ignore_index
    out[gt_ratio < min_ratio] = ignore_index
    assert list(out.shape) == [bs, 1, trg_h, trg_w], out.shape
    return out


def daformer_feat_dist(feat, feat_imnet, gt, fdist_classes, min_ratio, num_classes, fdist_lambda):
    """uda/dacs.py:173-186, 233-248: λ · mean over thing cells of ‖f − f_imnet‖₂ (channels)."""
    fdclasses = torch.tensor(fdist_classes, device=gt.device)
    scale_factor = gt.shape[-1] // feat.shape[-1]
    gt_rescaled = downscale_label_ratio(gt, scale_factor, min_ratio, num_classes, 255).long().detach()
    fdist_mask = torch.any(gt_rescaled[..., None] == fdclasses, -1)
    pw_feat_dist = torch.norm(feat - feat_imnet, dim=1, p=2)
    pw_feat_dist = pw_feat_dist[fdist_mask.squeeze(1)]
    return fdist_lambda * torch.mean(pw_feat_dist)
