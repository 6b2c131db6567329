"""``udabench report --validators``: what each label-free validator's pick costs each method, and whether the
ranking of methods survives it (docs/selection.md).

The candidates of a method are all evaluations of all its configurations (sweep points) of one seed, from the
adaptation's start on (``selection.adaptation_rows``: not the shared warm-up's earlier evaluations), finished
trained runs only, the oracle left out. Per method and seed: the oracle-best mIoU (reads target labels: ‡), each
validator's pick (its best score; ties to the later step), the pick's regret (oracle-best − picked mIoU) and rank
(1 = the best candidate by mIoU), and the weighted Spearman correlation of the validator with mIoU over the
candidates; then mean ± std over seeds. Pooled: the correlation over every method's candidates of a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..selection import LEAK_MARK, adaptation_rows
from ..validators import VALIDATORS
from ..vocabulary import Kind, Role
from .render import STD, render

ORACLE = f"oracle-best {LEAK_MARK}"


def weighted_spearman(scores, accuracies, power: float = 2.0) -> float:
    """Spearman correlation with weights that emphasise the top: powerful-benchmarker's (Musgrave et al. 2022,
    ``validator_tests/utils/weighted_spearman.py``): each point weighs max(r_s, r_a)^power, r the dense rank of its
    score and of its accuracy divided by the largest; the ranks are weighted ranks (a tie group's rank: the weight
    below it plus (n + 1)/2 × its mean weight) and the correlation is the weighted Pearson of those. NaN with fewer
    than two distinct values on either side."""
    x, y = np.asarray(scores, float), np.asarray(accuracies, float)
    if len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return float("nan")
    w = np.maximum(_dense(x), _dense(y)) ** power
    return _weighted_pearson(_weighted_rank(x, w), _weighted_rank(y, w), w)


def _dense(x: np.ndarray) -> np.ndarray:
    ranks = np.unique(x, return_inverse=True)[1] + 1.0
    return ranks / ranks.max()


def _weighted_rank(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    _, group, counts = np.unique(x, return_inverse=True, return_counts=True)
    mass = np.bincount(group, weights=w)
    below = np.cumsum(mass) - mass
    return (below + (counts + 1) / 2 * mass / counts)[group]


def _weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    da, db = a - np.average(a, weights=w), b - np.average(b, weights=w)
    return float(np.sum(w * da * db) / np.sqrt(np.sum(w * da ** 2) * np.sum(w * db ** 2)))


def candidates(records: pd.DataFrame) -> pd.DataFrame:
    """The rows validators choose among: evaluations of finished, trained runs from their adaptation's start on,
    the oracle and ensembles left out."""
    keep = (records["kind"] == Kind.MEASURED) & (records["role"] != Role.UPPER_BOUND)
    if "ensemble_of" in records:
        keep &= records["ensemble_of"].isna()
    return adaptation_rows(records[keep])


def recorded(rows: pd.DataFrame) -> list:
    """The validators some rows record."""
    return [v for f, v in VALIDATORS.items() if f in rows and rows[f].notna().any()]


def picks(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, seed, validator): oracle-best and picked mIoU, regret, rank, weighted Spearman."""
    out = []
    for (method, seed), group in candidates(rows).groupby(["method", "seed"], sort=False):
        group = group.sort_values("step", ascending=False, kind="stable")   # ties to the later checkpoint
        best = group["miou"].max()
        for v in recorded(group):
            scored = group[group[v.field].notna()]
            if scored.empty:
                continue
            score = scored[v.field] if v.higher_is_better else -scored[v.field]
            picked = scored.loc[score.idxmax(), "miou"]
            out.append({"method": method, "label": group["method_label"].iloc[0], "seed": seed,
                        "validator": v.label, "oracle": best, "picked": picked, "regret": best - picked,
                        "rank": 1 + int((scored["miou"] > picked).sum()),
                        "spearman": weighted_spearman(score, scored["miou"])})
    return pd.DataFrame(out)


def pooled_correlation(rows: pd.DataFrame) -> pd.DataFrame:
    """Per validator: the weighted Spearman over all methods' candidates of a seed, mean ± std over seeds."""
    out = []
    for v in recorded(rows):
        values = []
        for _, group in rows.groupby("seed"):
            scored = group[group[v.field].notna()]
            score = scored[v.field] if v.higher_is_better else -scored[v.field]
            values.append(weighted_spearman(score, scored["miou"]))
        known = [x for x in values if not np.isnan(x)]   # NaN: a constant score or mIoU (no ranking)
        out.append({"validator": v.label, "pooled": np.mean(known) if known else np.nan,
                    "pooled std": np.std(known, ddof=1) if len(known) > 1 else np.nan})
    return pd.DataFrame(out).set_index("validator")


def _wide(p: pd.DataFrame, value: str, oracle: bool = False) -> pd.DataFrame:
    """Methods × validators of ``value``'s mean and std over seeds (and the oracle-best first)."""
    stats = p.groupby(["label", "validator"], sort=False)[value].agg(["mean", "std"])
    table = pd.DataFrame(index=pd.Index(p["label"].unique(), name="method"))
    if oracle:
        best = p.groupby(["label", "seed"], sort=False)["oracle"].first().groupby(level=0, sort=False)
        table[ORACLE], table[ORACLE + STD] = best.mean(), best.std()
    for validator in p["validator"].unique():
        table[validator] = stats["mean"].xs(validator, level="validator")
        table[validator + STD] = stats["std"].xs(validator, level="validator")
    return table


def correlation_table(p: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Validators × methods of the weighted Spearman (mean and std over seeds), and the pooled one."""
    stats = p.groupby(["validator", "label"], sort=False)["spearman"].agg(["mean", "std"])
    table = pd.DataFrame(index=pd.Index(p["validator"].unique(), name="validator"))
    for label in p["label"].unique():
        table[label] = stats["mean"].xs(label, level="label")
        table[label + STD] = stats["std"].xs(label, level="label")
    pooled = pooled_correlation(rows)
    table["pooled"], table["pooled" + STD] = pooled["pooled"], pooled["pooled std"]
    return table


def ranking(p: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Methods ranked by mean picked mIoU under each validator, beside the oracle's ranking; the validators whose
    winner is not the oracle's."""
    columns = {ORACLE: p.groupby(["label", "seed"], sort=False)["oracle"].first().groupby(level=0).mean()}
    for validator, group in p.groupby("validator", sort=False):
        columns[validator] = group.groupby("label")["picked"].mean()
    table, changed = {}, []
    for name, means in columns.items():
        order = means.sort_values(ascending=False, kind="stable")
        table[name] = [f"{label} ({value:.1f})" for label, value in order.items()]
        if name != ORACLE and order.index[0] != columns[ORACLE].sort_values(ascending=False).index[0]:
            changed.append(name)
    width = max(len(v) for v in table.values())
    frame = pd.DataFrame({k: v + [""] * (width - len(v)) for k, v in table.items()},
                         index=pd.Index(range(1, width + 1), name="rank"))
    return frame, changed


def validator_tables(records: pd.DataFrame, fmt: str = "text") -> list[str]:
    """The regret, rank, correlation and ranking tables of every suite of ``records``."""
    parts = []
    for suite, runs in records.groupby("suite", sort=True):
        rows = candidates(runs)
        p = picks(rows) if not rows.empty else pd.DataFrame()
        if p.empty:
            parts.append(f"{suite}: no validator recorded by its finished runs (rows lack validator_*: runs of an "
                         f"earlier udabench version, or validators.images: 0); re-run them to compare validators.\n")
            continue
        n = rows.groupby("method")["seed"].nunique()
        where = (f"candidates: every evaluation (from the adaptation's start) × configuration of a method, per seed "
                 f"({int(n.min())}"
                 f"{'' if n.min() == n.max() else f'-{int(n.max())}'} seeds); mean ± std over seeds")
        leak = [f"{ORACLE}: the best target mIoU among the candidates; it reads the target eval labels "
                f"(what the oracle-target-val papers reported); no validator does."]
        regret = "Regret = oracle-best − the mIoU of the validator's pick (0: it found the best candidate)."
        parts.append(render(_wide(p, "picked", oracle=True), fmt, f"{suite}: mIoU (%) of each validator's pick; "
                            f"{where}", notes=leak))
        parts.append(render(_wide(p, "regret"), fmt, f"{suite}: regret (mIoU points) of each validator; {where}",
                            notes=[regret, *leak]))
        parts.append(render(_wide(p, "rank"), fmt, f"{suite}: rank by mIoU of each validator's pick among the "
                            f"candidates (1 = best); {where}"))
        parts.append(render(correlation_table(p, rows), fmt, f"{suite}: weighted Spearman (pow 2) of each validator with target mIoU over the "
                            f"candidates, per method and pooled; {where}", digits=2,
                            notes=["Weights max(rank of score, rank of mIoU)² emphasise the top "
                                   "(powerful-benchmarker); 1: the validator orders the candidates as mIoU does."]))
        table, changed = ranking(p)
        winner = (f"The winner changes under: {', '.join(changed)}." if changed
                  else "The winner is the oracle's under every validator.")
        parts.append(render(table, fmt, f"{suite}: ranking of methods under each validator (mean picked mIoU over "
                            f"seeds) beside the oracle's", notes=[winner, *leak]))
    return parts


def write_validator_figures(records: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One scatter per validator and suite: score vs mIoU of every candidate, one colour per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    written = []
    for suite, runs in records.groupby("suite"):
        rows = candidates(runs)
        for v in recorded(rows):
            fig, ax = plt.subplots(figsize=(5, 4))
            sns.scatterplot(data=rows, x=v.field, y="miou", hue="method_label", style="method_label", ax=ax, s=25)
            ax.set(xlabel=f"{v.label} ({'higher' if v.higher_is_better else 'lower'} is better)", ylabel="mIoU (%)",
                   title=f"{suite}: {v.label} vs target mIoU")
            path = Path(out_dir) / suite / "figures" / f"validator-{v.selection}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    return written
