"""UDA losses as pure functions on tensors (DESIGN §5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .classes import IGNORE_INDEX


def upsample(logits: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear up-sampling of N×C×h×w logits to ``size`` (H, W), the one interpolation udabench uses;
    ``align_corners=True`` is the official codes', a setting of training (``train.align_corners``, which plugins
    get through ``ctx.upsample``) and of evaluation (``eval.align_corners``)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=align_corners)


def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                      align_corners: bool = False) -> torch.Tensor:
    """Pixel-mean cross-entropy of logits up-sampled to the label size; ignored pixels excluded.

    Returns 0 (with a graph) when every pixel is ignored, where plain cross-entropy would give NaN.
    """
    logits = upsample(logits, label.shape[-2:], align_corners)
    if not (label != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), label, ignore_index=ignore_index)


def entropy_map(prob: torch.Tensor) -> torch.Tensor:
    """N×H×W Shannon entropy of a softmax map, normalised to [0, 1] by log C (ADVENT eq. 2)."""
    return -(prob * prob.clamp_min(1e-30).log()).sum(1) / math.log(prob.shape[1])


def entropy_loss(prob: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``entropy_map`` over the pixels where ``mask`` is True (all pixels by default).

    This is the mean form of the official ADVENT code; the paper writes a sum (λ values assume the mean).
    """
    ent = entropy_map(prob)
    if mask is None:
        return ent.mean()
    return (ent * mask).sum() / mask.sum().clamp(min=1)


def self_information(prob: torch.Tensor) -> torch.Tensor:
    """N×C×H×W weighted self-information ``-p·log p / log C`` (ADVENT §3.2); its channel sum is the entropy."""
    return -prob * prob.clamp_min(1e-30).log() / math.log(prob.shape[1])


def entropy_ranking_mask(prob: torch.Tensor, fraction: float = 0.3) -> torch.Tensor:
    """N×H×W bool: the ``fraction`` highest-entropy pixels of each image (ADVENT's MinEnt+ER)."""
    ent = entropy_map(prob).flatten(1)
    k = max(1, round(fraction * ent.shape[1]))
    top = ent.topk(k, dim=1).indices
    mask = torch.zeros_like(ent, dtype=torch.bool).scatter_(1, top, True)
    return mask.view(prob.shape[0], *prob.shape[2:])


def class_ratio_prior_loss(prob: torch.Tensor, prior: torch.Tensor, mu: float = 0.5) -> torch.Tensor:
    """ADVENT eq. 10: ``sum_c max(0, mu·prior_c − mean_hw P_c)``, averaged over the batch.

    ``prior`` is the ℓ1-normalised source class histogram; μ relaxes it (0 = no prior, 1 = exact ratio).
    """
    mean_prob = prob.mean(dim=(2, 3))
    return (mu * prior.to(mean_prob) - mean_prob).clamp(min=0).sum(1).mean()


def maxsquare_loss(prob: torch.Tensor, ignore_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Maximum squares loss, paper form ``-(1/2N) sum_n sum_c p²`` over the N kept pixels of the batch.

    The official code averages over N·C·H·W elements instead, i.e. it equals this value / C.
    """
    sq = prob.pow(2).sum(1)
    if ignore_mask is None:
        return -sq.mean() / 2
    keep = ~ignore_mask
    return -(sq * keep).sum() / (2 * keep.sum().clamp(min=1))


def iw_maxsquare_loss(prob: torch.Tensor, alpha: float = 0.2, weight_by: str = "channel") -> torch.Tensor:
    """Maximum squares with the image-wise class-balanced weight (MaxSquare eq. 13), mean over the batch.

    Per image: ``-sum_n sum_c p_{n,c}² / (2 (N^c)^α N^(1−α))`` with N^c the number of pixels whose
    argmax is c and N the pixels of the image; the weight is detached. Eq. 13 is undefined for a
    class that no pixel predicts (N^c = 0): we count it as N^c = 1, the rarest possible class. (The
    code clamps the whole denominator at 1 instead, which never triggers in its pixel-argmax form but
    would give such a channel weight 1 — about N times the others — and collapses training.)
    ``weight_by="channel"`` (paper) indexes the weight by the channel c. ``"pixel_argmax"`` (official
    code) gives every channel of a pixel the weight of that pixel's argmax class; the code also drops
    the ½ and divides by C, i.e. its value is this one × 2/C. Both forms are right at any batch size.
    """
    n, c = prob.shape[:2]
    flat = prob.flatten(2)                                               # N×C×P
    pixels = flat.shape[2]
    argmax = flat.detach().argmax(1)                                     # N×P
    counts = torch.zeros(n, c, device=prob.device, dtype=prob.dtype).scatter_add_(
        1, argmax, torch.ones_like(argmax, dtype=prob.dtype))            # N^c per image
    weight = 1.0 / (counts.clamp(min=1).pow(alpha) * pixels ** (1 - alpha))   # N×C
    if weight_by == "channel":
        weighted = flat.pow(2) * weight.unsqueeze(2)
    elif weight_by == "pixel_argmax":
        weighted = flat.pow(2) * weight.gather(1, argmax).unsqueeze(1)
    else:
        raise ValueError(f"weight_by must be 'channel' or 'pixel_argmax', got {weight_by!r}")
    return -weighted.sum(dim=(1, 2)).mean() / 2


def fada_soft_labels(logits: torch.Tensor, temperature: float = 1.8, clip: float = 0.9) -> torch.Tensor:
    """FADA domain encodings: ``softmax(logits / T)``, detached, entries above ``clip`` set to ``clip``
    (not renormalised, as in the official code)."""
    return (logits.detach() / temperature).softmax(1).clamp(max=clip)


def fine_grained_adversarial_loss(d_logits: torch.Tensor, soft_labels: torch.Tensor, domain: str) -> torch.Tensor:
    """FADA eq. 5/6: soft cross-entropy of the 2K-channel discriminator output, mean over batch and pixels.

    The target is ``[a; 0]`` for ``domain="source"`` and ``[0; a]`` for ``"target"`` (a = soft labels,
    K channels); the softmax runs over all 2K channels jointly. The generator step uses the target
    features with ``domain="source"``.
    """
    if domain not in ("source", "target"):
        raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
    zeros = torch.zeros_like(soft_labels)
    target = torch.cat([soft_labels, zeros] if domain == "source" else [zeros, soft_labels], dim=1)
    soft_labels = target.to(d_logits.dtype)
    return -(soft_labels * d_logits.log_softmax(1)).sum(1).mean()
