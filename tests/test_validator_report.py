"""`report --validators`: weighted Spearman against a loop formula, regret/rank/ranking on a crafted history."""

import math

import numpy as np
import pytest
from helpers import write_run

from udabench.analysis.records import load_records
from udabench.analysis.validators import (
    _weighted_rank,
    picks,
    ranking,
    weighted_spearman,
)
from udabench.cli import main
from udabench.selection import select


def loop_weighted_spearman(x, y, power=2):
    n = len(x)

    def dense(v):
        levels = sorted(set(v))
        return [(levels.index(a) + 1) / len(levels) for a in v]

    dx, dy = dense(x), dense(y)
    w = [max(dx[i], dy[i]) ** power for i in range(n)]

    def wrank(v):
        out = []
        for i in range(n):
            below = sum(w[j] for j in range(n) if v[j] < v[i])
            tied = [w[j] for j in range(n) if v[j] == v[i]]
            out.append(below + (len(tied) + 1) / 2 * sum(tied) / len(tied))
        return out

    rx, ry, total = wrank(x), wrank(y), sum(w)
    mx, my = sum(w[i] * rx[i] for i in range(n)) / total, sum(w[i] * ry[i] for i in range(n)) / total
    cov = sum(w[i] * (rx[i] - mx) * (ry[i] - my) for i in range(n))
    vx = sum(w[i] * (rx[i] - mx) ** 2 for i in range(n))
    vy = sum(w[i] * (ry[i] - my) ** 2 for i in range(n))
    return cov / math.sqrt(vx * vy)


def test_weighted_rank_matches_weightedcorr_documented_example():
    assert _weighted_rank(np.array([1.0, 2, 3, 4]), np.array([1, 1 / 2, 1 / 3, 1 / 4])) == \
        pytest.approx([1.0, 1.5, 1.8333333, 2.0833333])
    assert _weighted_rank(np.array([1.0, 2, 2, 3]), np.ones(4)) == pytest.approx([1.0, 2.5, 2.5, 4.0])


@pytest.mark.parametrize("seed", range(4))
def test_weighted_spearman_matches_a_loop_formula(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, 9).astype(float)          # ties on both sides
    y = x * 0.5 + rng.integers(0, 4, 9)
    assert weighted_spearman(x, y) == pytest.approx(loop_weighted_spearman(list(x), list(y)), rel=1e-12)
    assert weighted_spearman(x, x) == pytest.approx(1.0)
    assert weighted_spearman(x, -x) < -0.9   # not exactly -1: weighted ranks are not linear in plain ranks
    assert math.isnan(weighted_spearman([1.0, 1.0], [1.0, 2.0]))


def test_top_agreement_counts_more_than_bottom_agreement():
    acc = [1.0, 2, 3, 4, 5, 6]
    good_top = [2.0, 1, 4, 3, 5, 6]      # swaps at the bottom
    good_bottom = [1.0, 2, 3, 4, 6, 5]   # the same number of swaps at the top
    assert weighted_spearman(good_top, acc) > weighted_spearman(good_bottom, acc)


# (method, seed, hparam) -> rows (step, mIoU, entropy, snd): two sweep points per method
HISTORY = {
    ("minent", 0, 1.0): [(100, 40.0, 0.30, 3.0), (200, 44.0, 0.20, 3.1)],
    ("minent", 0, 2.0): [(100, 46.0, 0.25, 3.5), (200, 42.0, 0.10, 2.0)],
    ("minent", 1, 1.0): [(100, 41.0, 0.30, 3.0), (200, 45.0, 0.20, 3.6)],
    ("minent", 1, 2.0): [(100, 47.0, 0.25, 3.5), (200, 43.0, 0.10, 2.0)],
    ("advent", 0, 1.0): [(100, 50.0, 0.40, 3.0), (200, 41.0, 0.35, 2.0)],
    ("advent", 0, 2.0): [(100, 39.0, 0.50, 1.0), (200, 38.0, 0.45, 1.5)],
    ("advent", 1, 1.0): [(100, 48.0, 0.40, 3.0), (200, 41.0, 0.35, 2.0)],
    ("advent", 1, 2.0): [(100, 39.0, 0.50, 1.0), (200, 38.0, 0.45, 1.5)],
}


@pytest.fixture
def records(tmp_path):
    labels = {"minent": "MinEnt", "advent": "AdvEnt"}
    for (method, seed, lam), rows in HISTORY.items():
        write_run(tmp_path, method, labels[method], seed,
                  [(s, [m, m], {"validator_entropy": e, "validator_snd": d}) for s, m, e, d in rows],
                  hparams={"lambda": lam})
    write_run(tmp_path, "oracle", "Oracle", 0, [(100, [90.0, 90.0], {"validator_entropy": 0.0})], role="upper_bound")
    return load_records(tmp_path)


def test_picks_regret_and_rank_by_hand(records):
    p = picks(records).set_index(["method", "seed", "validator"])
    # MinEnt seed 0: entropy picks (200, λ2) = 42 of best 46 -> regret 4, rank 3 (46, 44 above it)
    assert p.loc[("minent", 0, "Entropy"), ["oracle", "picked", "regret", "rank"]].tolist() == [46.0, 42.0, 4.0, 3]
    # SND picks (100, λ2) = 46: regret 0, rank 1
    assert p.loc[("minent", 0, "SND"), ["picked", "regret", "rank"]].tolist() == [46.0, 0.0, 1]
    # AdvEnt seed 1: entropy picks (200, λ1) = 41 of 48
    assert p.loc[("advent", 1, "Entropy"), ["picked", "regret"]].tolist() == [41.0, 7.0]
    assert "oracle" not in p.index.get_level_values("method")
    table, changed = ranking(picks(records))
    assert table.loc[1, "oracle-best ‡"].startswith("AdvEnt") and table.loc[1, "SND"].startswith("AdvEnt")
    assert table.loc[1, "Entropy"].startswith("MinEnt") and changed == ["Entropy"]   # entropy favours MinEnt here


def test_report_validators_prints_every_table(records, tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path), "--validators"]) == 0
    out = capsys.readouterr().out
    for title in ("mIoU (%) of each validator's pick", "regret (mIoU points)", "rank by mIoU",
                  "weighted Spearman (pow 2)", "ranking of methods", "oracle-best ‡",
                  "The winner changes under: Entropy"):
        assert title in out, title
    assert main(["report", "--results", str(tmp_path), "--validators", "--format", "csv"]) == 0
    assert main(["report", "--results", str(tmp_path), "--table", "--selection", "snd"]) == 0


def test_report_help_lists_every_registered_selection(capsys):
    from udabench.selection import SELECTIONS

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split()).replace("- ", "-")   # argparse wraps at hyphens
    for name in [*SELECTIONS, "entropy", "info-max", "bnm", "snd", "disc-acc"]:
        assert name in out, name


def test_validator_figures_one_scatter_per_recorded_validator(records, tmp_path):
    # (`report --figures` also draws prediction panels, which these crafted runs lack: the function alone here)
    from udabench.analysis.validators import write_validator_figures

    written = write_validator_figures(records, tmp_path / "out")
    assert sorted(p.name for p in written) == ["validator-entropy.png", "validator-snd.png"]
    assert all(p.is_file() and p.stat().st_size > 1000 and p.parent == tmp_path / "out" / "toy" / "figures"
               for p in written)


def test_the_shared_warm_ups_earlier_evaluations_are_no_candidates(tmp_path):
    """A run continuing the shared warm-up carries its rows; only its last one (the adaptation's start) and the run's
    own evaluations are checkpoints of this run: a collapsed early warm-up model (low entropy) is never picked."""
    warm = {"warmup_from": "seed0-warmup"}
    write_run(tmp_path, "minent", "MinEnt", 0,
              [(10, [12.0, 12.0], {"validator_entropy": 0.01, **warm}),    # collapsed: lowest entropy of all
               (150, [30.0, 30.0], {"validator_entropy": 0.30, **warm}),   # the adaptation's start
               (175, [38.0, 38.0], {"validator_entropy": 0.20}), (200, [36.0, 36.0], {"validator_entropy": 0.25})])
    records = load_records(tmp_path)
    p = picks(records).set_index(["method", "seed", "validator"])
    assert p.loc[("minent", 0, "Entropy"), ["picked", "rank"]].tolist() == [38.0, 1]
    assert select(records, "entropy")["step"].tolist() == [175]
    assert select(records, "oracle-target-val")["step"].tolist() == [175]
    start = records.assign(miou=lambda r: r["step"].map({10: 50.0, 150: 45.0, 175: 38.0, 200: 36.0}))
    assert select(start, "oracle-target-val")["step"].tolist() == [150]   # the start is a candidate, step 10 is not
