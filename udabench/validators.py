"""Label-free validators: scores of a model's predictions on target *training* images, for checkpoint selection.

Each is a pure function of tensors (probabilities, sampled pixels, discriminator logits), never of target labels;
``engine/validate.py`` feeds them a fixed, seeded sample of the target training split at every evaluation and the
rows record them (``validator_<name>``). ``VALIDATORS`` says, per row field, which way is better, so a selection
protocol (``selection.py``) and the report's regret and correlation tables (``analysis/validators.py``) read them
alike. docs/selection.md says what each measures and its known biases.

Shapes: ``prob`` is a softmax map N×C×H×W; ``pixels`` is N×K×C (K pixels sampled per image, ``sample_pixels``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the registry below is read by `udabench report` (selection.py), which starts without torch
    import torch


@dataclass(frozen=True)
class Validator:
    field: str               # the row field
    label: str               # in tables
    higher_is_better: bool
    description: str
    selection: str           # the selection protocol that picks by it (selection.py)


VALIDATORS = {v.field: v for v in (
    Validator("validator_entropy", "Entropy", False, "mean pixel entropy of target training predictions", "entropy"),
    Validator("validator_im", "IM", True, "information maximisation: H(mean prediction) - mean H(prediction)",
              "info-max"),
    Validator("validator_bnm", "BNM", True, "nuclear norm of the sampled-pixel prediction matrix / its rows", "bnm"),
    Validator("validator_snd", "SND", True, "soft neighbourhood density of sampled pixels (T = 0.05)", "snd"),
    Validator("validator_disc_acc", "Disc. acc.", False,
              "discriminator accuracy, source vs target training images (adversarial methods)", "disc-acc"),
    Validator("source_val_miou", "Source val", True, "mIoU on the held-out labelled source split", "source-val"),
)}


def mean_entropy(prob: torch.Tensor) -> float:
    """Mean pixel entropy, normalised to [0, 1] by log C: (1/NHW) Σ_n,h,w −Σ_c p log p / log C.

    Grandvalet & Bengio, "Semi-supervised learning by entropy minimization", NeurIPS 2004 (eq. 6, the entropy
    term); as a segmentation validator in Vu et al., ADVENT, CVPR 2019, eq. (2) (the per-pixel normalised form).
    Lower is better (confident predictions); it rewards any confident model, right or wrong.
    """
    p = prob.double().clamp_min(1e-30)
    return float((-(p * p.log()).sum(1) / math.log(prob.shape[1])).mean())


def information_maximization(prob: torch.Tensor) -> float:
    """Information maximisation H(p̄) − mean H(p), with p̄ the mean prediction over all pixels; normalised by log C.

    Shi & Sha, "Information-theoretical learning of discriminative clusters for unsupervised domain adaptation",
    ICML 2012 (eq. 2: mutual information of inputs and predicted labels); as a validator: Musgrave et al., "Three
    New Validators and a Large-Scale Benchmark Ranking for Unsupervised Domain Adaptation", 2022 (§3, IM).
    Higher is better: confident pixels (low mean entropy) whose classes are diverse (high entropy of the mean).
    """
    c = prob.shape[1]
    p = prob.double().clamp_min(1e-30)
    mean = p.transpose(0, 1).reshape(c, -1).mean(1)
    return float((-(mean * mean.log()).sum() + (p * p.log()).sum(1).mean()) / math.log(c))


def batch_nuclear_norm(pixels: torch.Tensor) -> float:
    """BNM: ‖A‖_* / B, the nuclear norm (sum of singular values) of the B×C prediction matrix A of sampled pixels.

    Cui et al., "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization under Label Insufficient
    Situations", CVPR 2020, eq. (8) (the loss −‖A‖_*/B, here with its sign turned: higher is better). ``pixels``
    N×K×C (or B×C): all sampled pixels of the sample are the rows of one matrix.
    """
    import torch

    a = pixels.double().reshape(-1, pixels.shape[-1])
    return float(torch.linalg.matrix_norm(a, "nuc") / a.shape[0])


def soft_neighbourhood_density(pixels: torch.Tensor, temperature: float = 0.05) -> float:
    """SND: the mean entropy of each sampled pixel's soft neighbourhood among the pixels of its image.

    Saito et al., "Tune it the Right Way: Unsupervised Validation of Domain Adaptation via Soft Neighborhood
    Density", ICCV 2021, eq. (1)-(3): features L2-normalised, similarities s_ij / T, a softmax over j, the
    entropy of each row, averaged. Segmentation recipe of the authors' code (VisionLearningGroup/SND,
    ``AdaptSegNet/run_all.py`` ``eval_siment``): the features are the softmax vectors of K = 100 pixels drawn
    per image, T = 0.05, the row includes the pixel itself (no diagonal mask in that code) and the entropy
    uses the natural log; the image means are averaged (the code divides by the image count minus one, a slip
    not reproduced). ``pixels``: N×K×C. Higher is better (dense neighbourhoods: clustered predictions).
    """
    import torch

    x = torch.nn.functional.normalize(pixels.double(), dim=-1)
    sim = torch.softmax(x @ x.transpose(1, 2) / temperature, dim=-1)
    entropy = -(sim * sim.clamp_min(1e-30).log()).sum(-1)
    return float(entropy.mean())


def discriminator_accuracy(source_logits: torch.Tensor, target_logits: torch.Tensor) -> float:
    """Balanced accuracy of a domain discriminator: ½ (share of source positions called source + share of target
    positions called target); a logit > 0 says "target".

    The alignment criterion of adversarial UDA (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
    Backpropagation", ICML 2015, eq. (9): the domain classifier's loss, which the features are trained to
    maximise); read as a validator (Musgrave et al. 2022 above, §2: the discriminator-based criteria). Lower is
    better: a discriminator near chance (0.5) cannot tell the domains apart.
    """
    return float(((source_logits <= 0).double().mean() + (target_logits > 0).double().mean()) / 2)


def sample_pixels(prob: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """N×K×C: K pixels of each image drawn without replacement (all of them when an image has fewer), as SND's
    code draws them (a ``randperm`` per image), from ``generator`` only (never the global RNG)."""
    import torch

    n, c = prob.shape[:2]
    flat = prob.reshape(n, c, -1)
    k = min(k, flat.shape[-1])
    picks = torch.stack([torch.randperm(flat.shape[-1], generator=generator)[:k] for _ in range(n)])
    return torch.gather(flat, 2, picks[:, None, :].expand(n, c, k).to(flat.device)).transpose(1, 2)
