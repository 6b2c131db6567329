"""Ensemble rows: averaged softmax of finished runs, scored like any run."""

import torch
from torch.utils.data import default_collate

from udabench import checkpoint
from udabench.config import load_suite
from udabench.engine.rundata import build_data
from udabench.engine.runner import run_suite
from udabench.losses import upsample
from udabench.metrics import confusion_matrix
from udabench.models import build_model


def test_ensemble_row_equals_an_independent_average(write_suite, tmp_path):
    path = write_suite(lambda s: s.update(ensembles={"SO+Oracle": ["source_only", "oracle"],
                                                     "SO twice": ["source_only", "source_only"]}))
    suite = load_suite(path)
    outcomes = run_suite(suite, tmp_path)
    members = {o.spec.method.name: o.spec.rundir for o in outcomes}
    ens_rows = {p.parent.parent.name: [__import__("json").loads(l) for l in p.read_text().splitlines()]
                for p in (tmp_path / "tiny").glob("ensemble-*/*/metrics.jsonl")}
    assert set(ens_rows) == {"ensemble-so-oracle", "ensemble-so-twice"}

    # An ensemble of a run with itself is that run.
    assert ens_rows["ensemble-so-twice"][0]["confusion"] == members["source_only"].rows()[-1]["confusion"]

    # Independent computation of the two-model average.
    models = []
    for name in ("source_only", "oracle"):
        model = build_model(suite.model, 19)
        model.load_state_dict(checkpoint.segmenter_state(checkpoint.load(members[name].checkpoint)))
        models.append(model.eval())
    data = build_data(suite)
    batch = default_collate([data.eval[i] for i in range(len(data.eval))])
    with torch.no_grad():
        prob = sum(upsample(m(batch["image"]).main.softmax(1), batch["label"].shape[-2:]) for m in models) / 2
    expected = confusion_matrix(prob.argmax(1), batch["label"], 19)
    got = torch.tensor(ens_rows["ensemble-so-oracle"][0]["confusion"])
    # Up-sampling the log of the mean vs the mean of up-sampled softmaxes may flip a handful of boundary pixels.
    assert (got - expected).abs().sum() <= 0.01 * expected.sum()
    assert ens_rows["ensemble-so-oracle"][0]["method_label"] == "SO+Oracle"

    again = run_suite(load_suite(path), tmp_path)  # idempotent: nothing retrained or re-scored
    assert all(o.status == "skipped" for o in again)


def test_a_synthetic_suite_run_rebuilds_its_suite(tmp_path):
    """The identity of a synthetic suite's run carries the generator version, which is no suite key."""
    from udabench.config import Suite
    from udabench.data.synthetic import SyntheticConfig
    from udabench.engine.identity import identity_of
    from udabench.engine.rundir import RunDir
    from udabench.schema import from_dict

    suite = from_dict(Suite, {"name": "syn", "data": {"source": {"dataset": "synthetic-sim"},
                                                       "target": {"dataset": "synthetic-real"},
                                                       "eval": {"dataset": "synthetic-real", "split": "val"}}}, "", "-")
    suite.synthetic = SyntheticConfig()
    run = RunDir(tmp_path, "syn", "source_only", identity_of(suite, 0, method="source_only", hparams={}))
    run.prepare({})
    assert RunDir.open(run.path).suite().synthetic == suite.synthetic
