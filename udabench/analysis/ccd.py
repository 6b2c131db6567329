"""Class-center distance (FADA, Wang et al. ECCV'20, eq. 9) and its per-method summary table.

CCD(i) = 1/(K-1) · Σ_{j≠i} [ (1/|S_i|) Σ_{x∈S_i} ‖x − μ_i‖² ] / ‖μ_i − μ_j‖

the intra-class spread of class i over its distance to every other class centre: lower means
tighter, better separated classes. K counts the classes that have samples (docs/analyses.md).
"""

from __future__ import annotations

import pandas as pd
import torch

from .tables import ordered_groups


def class_center_distance(features: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int = 255,
                          squared_denominator: bool = False) -> torch.Tensor:
    """Per-class CCD of N×D ``features`` with labels N, as a C tensor (NaN for a class without samples).

    ``squared_denominator`` divides by ‖μ_i − μ_j‖² (then CCD does not change when features are
    scaled). Computed in float64 at least, whatever the input dtype; the spread is the mean of
    per-sample squared distances, not E[x²] − μ², which cancels badly for far-off centres.
    """
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(f"features must be N×D and labels N, got {tuple(features.shape)} and {tuple(labels.shape)}")
    dtype = torch.promote_types(features.dtype, torch.float64)
    keep = labels != ignore_index
    x, y = features[keep].to(dtype), labels[keep].long()
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}) or {ignore_index}")
    count = torch.bincount(y, minlength=num_classes).to(dtype)
    centre = torch.zeros(num_classes, x.shape[1], dtype=dtype, device=x.device).index_add_(0, y, x)
    centre /= count.clamp(min=1)[:, None]
    spread = torch.zeros(num_classes, dtype=dtype, device=x.device)
    spread.index_add_(0, y, (x - centre[y]).pow(2).sum(1))
    spread /= count
    present = count > 0
    distance = (centre[:, None] - centre[None]).norm(dim=-1)
    if squared_denominator:
        distance = distance.pow(2)
    pairs = present[:, None] & present[None] & ~torch.eye(num_classes, dtype=torch.bool, device=x.device)
    ratio = torch.where(pairs, spread[:, None] / distance, torch.zeros((), dtype=dtype, device=x.device))
    ccd = ratio.sum(1) / pairs.sum(1)          # 0/0 = NaN for an absent class or a lone one
    return torch.where(present, ccd, torch.full_like(ccd, float("nan")))


def ccd_table(ccd: pd.DataFrame, scope: str = "joint") -> pd.DataFrame:
    """Configurations (table order: Source-only first, Oracle last) × classes, mean CCD over seeds, plus
    each run's class mean.

    ``ccd`` is the long-form frame of ``ccd_features.suite_ccd``. The "mean" column averages, over seeds,
    the nan-mean over classes of each run.
    """
    rows = []
    for _, group in ordered_groups(ccd[ccd["scope"] == scope]):
        per_run = group.pivot_table(index="run_dir", columns="class", values="ccd", sort=False, dropna=False)
        rows.append({"method": group["label"].iloc[0], **per_run.mean().to_dict(),
                     "mean": per_run.mean(axis=1).mean(), "seeds": len(per_run)})
    return pd.DataFrame(rows).set_index("method")
