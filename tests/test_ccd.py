"""Class-center distance (FADA eq. 9): an independent implementation, known answers, and the suite analysis."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from helpers import tiny_suite_dict

from udabench.analysis import ccd_features, class_center_distance
from udabench.analysis.ccd import ccd_table
from udabench.analysis.ccd_features import ClassSample, labels_on_grid, suite_ccd
from udabench.classes import CLASS_SETS
from udabench.cli import main
from udabench.errors import UdabenchError


def naive_ccd(features, labels, num_classes, ignore_index=255, squared=False):
    """Eq. 9 written out with loops over classes and samples, in float64, from the paper's text."""
    members = {c: [np.asarray(x, dtype=np.float64) for x, y in zip(features, labels) if y == c]
               for c in range(num_classes) if c != ignore_index}
    present = [c for c in range(num_classes) if members[c]]
    centre = {c: sum(members[c]) / len(members[c]) for c in present}
    out = []
    for i in range(num_classes):
        others = [j for j in present if j != i]
        if i not in present or not others:
            out.append(math.nan)
            continue
        spread = sum(float(np.sum((x - centre[i]) ** 2)) for x in members[i]) / len(members[i])
        terms = []
        for j in others:
            distance = math.sqrt(float(np.sum((centre[i] - centre[j]) ** 2)))
            terms.append(spread / (distance ** 2 if squared else distance))
        out.append(sum(terms) / len(others))
    return np.array(out)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_an_independent_implementation_on_random_features(squared, dtype):
    g = torch.Generator().manual_seed(0)
    n, d, c = 400, 24, 7
    features = (torch.randn(n, d, generator=g) * 3 + 5).to(dtype)
    labels = torch.randint(0, c - 1, (n,), generator=g)     # class 6 never occurs
    labels[torch.rand(n, generator=g) < 0.1] = 255             # ignored samples count nowhere
    ours = class_center_distance(features, labels, c, squared_denominator=squared).numpy()
    theirs = naive_ccd(features.double().numpy(), labels.tolist(), c, squared=squared)
    assert np.isnan(ours[6]) and np.isnan(theirs[6])
    np.testing.assert_allclose(ours[:6], theirs[:6], rtol=1e-6)
    assert np.max(np.abs(ours[:6] / theirs[:6] - 1)) < 1e-6


def test_hand_computed_golden_values():
    # 1-D: class 0 = {0, 2} (centre 1, spread 1), class 1 = {10} (centre 10, spread 0),
    # class 2 = {4, 6} (centre 5, spread 1), class 3 absent; centre distances 9, 4 and 5.
    features = torch.tensor([[0.0], [2.0], [10.0], [4.0], [6.0], [99.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2, 2, 255])
    plain = class_center_distance(features, labels, 4)
    squared = class_center_distance(features, labels, 4, squared_denominator=True)
    assert plain[:3].tolist() == pytest.approx([(1 / 9 + 1 / 4) / 2, 0.0, (1 / 4 + 1 / 5) / 2], rel=1e-12)
    assert squared[:3].tolist() == pytest.approx([(1 / 81 + 1 / 16) / 2, 0.0, (1 / 16 + 1 / 25) / 2], rel=1e-12)
    assert math.isnan(plain[3]) and math.isnan(squared[3])


@pytest.mark.parametrize("sigma, distance", [(1.0, 4.0), (0.5, 10.0), (2.0, 1.0)])
def test_known_answer_for_two_point_clusters(sigma, distance):
    """Class i = {μ_i ± σ·e}: spread σ², so with two classes CCD = σ²/d (σ²/d² squared)."""
    e = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    mu = [torch.zeros(3, dtype=torch.float64), torch.tensor([distance, 0.0, 0.0], dtype=torch.float64)]
    features = torch.stack([mu[0] + sigma * e, mu[0] - sigma * e, mu[1] + sigma * e, mu[1] - sigma * e])
    labels = torch.tensor([0, 0, 1, 1])
    assert class_center_distance(features, labels, 2).tolist() == pytest.approx([sigma ** 2 / distance] * 2)
    assert class_center_distance(features, labels, 2, squared_denominator=True).tolist() == pytest.approx(
        [sigma ** 2 / distance ** 2] * 2)


def clusters(separation: float, n: int = 300, classes: int = 4, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g)
    centres = separation * centres / centres.norm(dim=1, keepdim=True)
    labels = torch.arange(classes).repeat_interleave(n)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def test_well_separated_clusters_have_lower_ccd_than_overlapping_ones():
    separated = class_center_distance(*clusters(separation=20.0), 4)
    overlapping = class_center_distance(*clusters(separation=0.5), 4)
    assert torch.all(separated < overlapping)
    assert torch.all(separated < 1.0) and torch.all(overlapping > 5.0)


def test_scale_behaviour_and_invariances():
    features, labels = clusters(separation=3.0)
    base, free = class_center_distance(features, labels, 4), class_center_distance(features, labels, 4, 255, True)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(class_center_distance(features[perm] + 7.0, labels[perm], 4), base)   # order, shift
    assert torch.allclose(class_center_distance(3 * features, labels, 4), 3 * base)          # linear in scale
    assert torch.allclose(class_center_distance(3 * features, labels, 4, 255, True), free)   # scale-free variant


def test_a_lone_class_has_no_ccd_and_bad_input_is_rejected():
    assert math.isnan(class_center_distance(torch.ones(3, 2), torch.tensor([1, 1, 255]), 3)[1])
    with pytest.raises(ValueError, match="labels must be in"):
        class_center_distance(torch.ones(2, 2), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="N×D"):
        class_center_distance(torch.ones(2, 2, 2), torch.tensor([0, 1]), 3)


def test_labels_on_the_feature_grid_take_the_strict_majority_class():
    label = torch.tensor([[1, 1, 2, 2],
                          [1, 1, 2, 0],
                          [3, 3, 255, 255],
                          [4, 4, 255, 0]])
    grid = labels_on_grid(label, (2, 2), num_classes=5)
    # pure cell -> 1; 3 of 4 pixels -> 2; two classes at 50% -> left out; mostly ignored -> left out
    assert grid.tolist() == [[1, 2], [255, 255]]
    assert labels_on_grid(label, (2, 2), 5, min_fraction=0.0).tolist()[1][1] == 0   # any plurality


def test_class_sample_is_bounded_per_class_and_independent_of_batching():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (1000,), generator=g)
    labels[labels == 3] = 255
    labels[:5] = 2                                                   # class 2: rare below
    labels[5:][labels[5:] == 2] = 1
    features = torch.arange(1000, dtype=torch.float64)[:, None]      # feature = item index
    whole = ClassSample(4, k=50)
    whole.add(features, labels)
    batched = ClassSample(4, k=50)
    for start in range(0, 1000, 137):
        batched.add(features[start:start + 137], labels[start:start + 137])
    assert torch.equal(whole.features, batched.features) and torch.equal(whole.labels, batched.labels)
    assert torch.bincount(whole.labels, minlength=4).tolist() == [50, 50, 5, 0]
    index = whole.features[:, 0].long()
    assert torch.equal(labels[index], whole.labels) and len(set(index.tolist())) == len(index)   # no repeats
    assert ClassSample(4, k=50, seed=1).generator.initial_seed() != whole.generator.initial_seed()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data):
    """A results folder with one finished tiny Source-only run and one Oracle run (1 iteration each).

    Inputs at twice the 80×40 label size put the stride-8 feature cells on the 4×4 label blocks of
    the fake datasets, so most cells are pure.
    """
    base = tmp_path_factory.mktemp("ccd")
    config = tiny_suite_dict(tiny_data, iterations=1, eval_every=1, checkpoint_every=1)
    for split in ("source", "target", "eval"):
        config["data"][split]["size"] = [160, 80]
    suite = base / "suite.yaml"
    suite.write_text(yaml.safe_dump(config))
    assert main(["run", str(suite), "--methods", "source_only,oracle", "--results", str(base / "r")]) == 0
    return base / "r"


def test_suite_ccd_rows_budget_and_cache(finished, monkeypatch):
    names = CLASS_SETS["cityscapes19"].names
    ccd = suite_ccd(finished, "tiny", samples_per_class=5, progress=False)
    assert set(ccd["method"]) == {"source_only", "oracle"} and set(ccd["scope"]) == {"source", "target", "joint"}
    assert len(ccd) == 2 * 3 * len(names)
    assert {"suite", "method_label", "seed", "run_id", "class", "ccd", "ccd_scale_free", "samples"} <= set(ccd)
    counts = ccd.pivot_table(index=["run_id", "class"], columns="scope", values="samples")
    assert (counts[["source", "target"]] <= 5).all().all()                            # the budget
    assert (counts["joint"] == counts["source"] + counts["target"]).all()             # joint = union
    assert (ccd.loc[ccd["samples"] == 0, "ccd"].isna()).all() and ccd["ccd"].notna().any()
    for run in {*ccd["run_id"]}:
        file = next(finished.glob(f"tiny/*/{run}/analysis/ccd.json"))
        assert len(json.loads(file.read_text())) == 1

    def no_model(*args):
        raise AssertionError("cached CCD must not load the model")

    monkeypatch.setattr(ccd_features, "load_run", no_model)
    again = suite_ccd(finished, "tiny", samples_per_class=5, progress=False)
    assert again.equals(ccd)
    with pytest.raises(AssertionError, match="must not load"):       # another budget is computed anew
        suite_ccd(finished, "tiny", samples_per_class=6, progress=False)


def test_target_only_ccd_and_the_summary_table(finished):
    ccd = suite_ccd(finished, "tiny", samples_per_class=5, domains=("target",), progress=False)
    assert set(ccd["scope"]) == {"target"}
    table = ccd_table(ccd, scope="target")
    assert list(table.index) == ["Source-only", "Oracle"]
    assert list(table.columns) == [*CLASS_SETS["cityscapes19"].names, "mean", "seeds"]
    run = ccd[ccd["method"] == "oracle"]
    assert table.loc["Oracle", "mean"] == pytest.approx(np.nanmean(run["ccd"]))


def test_bad_ccd_parameters(finished):
    with pytest.raises(UdabenchError, match="domains"):
        suite_ccd(finished, "tiny", domains=("source", "val"), progress=False)
    with pytest.raises(UdabenchError, match="budget"):
        suite_ccd(finished, "tiny", samples_per_class=0, progress=False)
    with pytest.raises(UdabenchError, match="no finished run"):
        suite_ccd(finished, "other", progress=False)
