"""The segmenter's optimizer: how its parameters are listed (``train.param_listing``) and the SGD that steps them.

``unique`` (udabench's protocol): two groups, the trainable backbone tensors at ``train.lr`` and the heads at
``lr × head_lr_mult``, each tensor listed once, ``torch.optim.SGD``.

``deeplab_official``: the groups of the Pytorch-Deeplab lineage (ADVENT ``advent/model/deeplabv2.py:131-171``,
MaxSquare ``graphs/models/deeplab_multi.py:132-171``, AdaptSegNet, DACS). Their 1× group is built by
``for j in block.modules(): for k in j.parameters(): yield k`` over the trunk's top-level blocks (``conv1, bn1,
layer1..layer4``); ``modules()`` yields the block itself and every module below it and ``parameters()`` is
recursive, so a tensor is listed once for every module of its block that holds it: a bottleneck convolution 3×
(layer, bottleneck, convolution), a projection 4×, the stem convolution once, a tensor with ``requires_grad``
False never (ADVENT: 314 entries for 104 tensors). The 10× group lists each head tensor once. The PyTorch the
authors trained with (0.4.1, 1.0) stepped a group entry by entry: ``d_p = p.grad``; ``d_p += wd · p`` in place;
the momentum buffer (zeros at the tensor's first visit ever) ``buf = m · buf + d_p``; ``p -= lr · buf``. A tensor
listed k times therefore takes k chained momentum steps per iteration, its gradient gaining a weight-decay term
at each (docs/recipes.md gives the measured effective LR: ≈3× and 4× the nominal one). ``RepeatedSGD``
applies exactly that sequence to each tensor, once per group of equal multiplicity; today's ``torch.optim.SGD``
given such a list warns, takes one momentum step per visit from the first iteration on, and on CUDA
(``foreach``) computes yet other multiples.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from ..errors import ConfigError

LISTINGS = ("unique", "deeplab_official")


def official_multiplicities(backbone: nn.Module) -> Counter:
    """How often the official 1× generator lists each trainable tensor of ``backbone``, walked as the official
    code walks its trunk: every top-level block, every module of it (itself included), every tensor below."""
    counts: Counter = Counter()
    for block in backbone.children():
        for module in block.modules():
            counts.update(p for p in module.parameters() if p.requires_grad)
    return counts


def segmenter_groups(model: nn.Module, train_cfg) -> list[dict]:
    """The segmenter's parameter groups, each ``{"params", "lr", "visits"}``: the backbone first (by multiplicity
    under ``deeplab_official``), the heads last at ``lr × head_lr_mult``."""
    backbone, heads = model.param_groups()
    lr = train_cfg.lr
    if train_cfg.param_listing == "unique":
        by_visits = {1: backbone}
    else:
        counts = official_multiplicities(model.backbone)
        missing = [name for name, p in model.backbone.named_parameters() if p.requires_grad and not counts[p]]
        if missing:
            raise ConfigError(f"train.param_listing: deeplab_official lists the tensors of the backbone's top-level "
                              f"blocks, but {model.backbone.__class__.__name__} holds {', '.join(missing[:3])} "
                              f"directly; use train.param_listing: unique with this backbone.")
        by_visits: dict[int, list] = {}
        for p in backbone:
            by_visits.setdefault(counts[p], []).append(p)
    groups = [{"params": params, "lr": lr, "visits": k} for k, params in sorted(by_visits.items())]
    return groups + [{"params": heads, "lr": lr * train_cfg.head_lr_mult, "visits": 1}]


def segmenter_optimizer(model: nn.Module, train_cfg) -> torch.optim.Optimizer:
    groups = segmenter_groups(model, train_cfg)
    if train_cfg.optimizer == "adamw":   # DAFormer/MIC (configs/_base_/schedules/adamw.py); unique listing only
        return torch.optim.AdamW([{k: g[k] for k in ("params", "lr")} for g in groups], lr=train_cfg.lr,
                                 betas=(0.9, 0.999), weight_decay=train_cfg.weight_decay)
    kwargs = {"lr": train_cfg.lr, "momentum": train_cfg.momentum, "weight_decay": train_cfg.weight_decay}
    if train_cfg.param_listing == "unique":
        return torch.optim.SGD([{k: g[k] for k in ("params", "lr")} for g in groups], **kwargs)
    return RepeatedSGD(groups, **kwargs)


class RepeatedSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay as PyTorch ≤ 1.x stepped a group that lists each of its tensors
    ``visits`` times (see the module docstring): per visit, in place, ``g += wd · p``; ``buf = m · buf + g``
    (``buf`` zeros before the tensor's first visit ever, so its first value is ``g``); ``p -= lr · buf``. Tensors
    without a gradient are skipped, as there. ``visits: 1`` is ``torch.optim.SGD``'s update.

    The same operations in the same order per tensor, so the result is the authors' to the bit; only their
    grouping differs, as ``torch.optim.SGD`` chooses: on CUDA each operation runs fused over the group
    (``foreach``), on a CPU a tensor takes its k visits while it is in cache (faster than the authors' loop over
    the list, where a tensor's entries lie apart: benchmarks/param_listing.py)."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "visits": 1})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self._buffer(p) for p in params] if group["momentum"] else grads
            lists = [(params, grads, bufs)] if params[0].is_cuda else [([p], [g], [b]) for p, g, b in
                                                                       zip(params, grads, bufs)]
            for tensors in lists:
                for _ in range(group["visits"]):
                    _visit(*tensors, group)
        return loss

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"]


def _visit(params: list, grads: list, bufs: list, group: dict) -> None:
    """One visit of the authors' SGD to each tensor of ``params`` (``bufs`` is ``grads`` without momentum)."""
    if group["weight_decay"]:
        torch._foreach_add_(grads, params, alpha=group["weight_decay"])
    if group["momentum"]:
        torch._foreach_mul_(bufs, group["momentum"])
        torch._foreach_add_(bufs, grads)
    torch._foreach_add_(params, bufs, alpha=-group["lr"])
