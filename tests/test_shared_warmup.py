"""The source warm-up is shared: every method of a seed adapts the same source-trained weights.

It is a stage without LR restart (engine/stages.py): an internal run in ``results/<suite>/_warmup/`` trains
the first ``source_warmup`` steps of the schedule, and each method continues that schedule from its final
checkpoint."""

import pytest
import yaml
from helpers import curves, events, texts, tiny_suite_dict

from udabench.config import load_suite
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.rundir import RunDir
from udabench.engine.runner import run_suite

VOLATILE = ("time", *TIMING_FIELDS, "run_id", "warmup_from")


def rows(outcome):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in outcome.spec.rundir.rows()]


@pytest.fixture(scope="module")
def shared_and_alone(tmp_path_factory, tiny_data):
    """MinEnt after Source-only (both continue one shared warm-up run) and MinEnt alone (its own warm-up run)."""
    folder = tmp_path_factory.mktemp("warmup")
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite_dict(tiny_data, source_warmup=2, iterations=6)))
    shared = run_suite(load_suite(path), folder / "shared", methods=["source_only", "minent"])
    alone = run_suite(load_suite(path), folder / "alone", methods=["minent"])
    return folder, shared, alone[0]


def test_a_method_after_source_only_loads_its_warmup_and_matches_a_run_of_its_own(shared_and_alone):
    folder, shared, minent_alone = shared_and_alone
    minent_shared = shared[1]

    warmups = list((folder / "shared" / "tiny" / "_warmup").glob("seed0-*"))
    assert len(warmups) == 1 and (warmups[0] / "done").exists()     # one warm-up run for both methods
    warmup = RunDir.open(warmups[0])
    assert shared[0].spec.start.spec.rundir.id == minent_shared.spec.start.spec.rundir.id == warmup.id
    log = (minent_shared.spec.rundir.path / "log.txt").read_text()
    assert "started from the shared source warm-up" in log and "continuing its schedule at step 2" in log

    # Continuing the shared warm-up is exact: same losses and scores whoever trained it.
    assert rows(minent_shared) == rows(minent_alone)
    assert [r["step"] for r in rows(minent_shared)] == [2, 4, 6]
    first = minent_shared.spec.rundir.rows()[0]
    assert first["warmup_from"] == warmup.id and first["method"] == "minent" and first["iterations"] == 6
    assert first["miou"] == shared[0].spec.rundir.rows()[0]["miou"] == warmup.rows()[0]["miou"]
    assert [o.spec.method.name for o in shared] == ["source_only", "minent"]   # the warm-up is not a table row


def test_a_loaded_warmup_gives_its_evaluations_to_the_tensorboard_run(shared_and_alone):
    """The loading run's TensorBoard run has the warm-up's evaluations and its own steps; the warm-up's step
    curves are in the run that computed it, which a note names."""
    pytest.importorskip("tensorboard")
    _, shared, minent_alone = shared_and_alone
    warmup = shared[1].spec.start.spec.rundir
    loaded, alone, warmed = (events(r.path) for r in (shared[1].spec.rundir, minent_alone.spec.rundir, warmup))
    got, want = curves(loaded), curves(alone)
    assert [s for s, _ in got["eval/mIoU/cityscapes19"]] == [2, 4, 6]
    assert got["eval/mIoU/cityscapes19"] == want["eval/mIoU/cityscapes19"]
    assert [s for s, _ in got["train/loss_seg"]] == [4, 6] and got["train/loss_seg"] == want["train/loss_seg"]
    (step, note), stage = texts(loaded, "stage")
    assert step == 1 and f"run {warmup.id}" in note and "tb/ has the step curves" in note
    assert stage == (3, "steps 3-6: MinEnt")
    assert [s for s, _ in curves(warmed)["train/loss_seg"]] == [2]           # the warm-up's own step curve
    assert texts(warmed, "stage") == [(1, "steps 1-2: shared source warm-up")]


def test_the_warmup_key_ignores_the_method_but_not_the_schedule(write_suite, tmp_path):
    from udabench.engine.plan import make_plan

    specs = make_plan(load_suite(write_suite(source_warmup=2)), tmp_path, ["source_only", "minent", "oracle"]).requested
    assert specs[0].start.spec is specs[1].start.spec and not specs[0].start.restart   # one shared warm-up
    assert specs[2].start is None                                                     # the oracle has none
    other = make_plan(load_suite(write_suite(source_warmup=2, lr=0.02)), tmp_path, ["minent"]).requested[0]
    assert other.start.spec.rundir.id != specs[0].start.spec.rundir.id
    assert make_plan(load_suite(write_suite()), tmp_path, ["minent"]).requested[0].start is None


def test_a_corrupt_warmup_snapshot_is_trained_again(write_suite, tmp_path):
    """A finished warm-up whose snapshot is unreadable is damaged (issue 27): the next run that continues it trains
    the warm-up again, from the same seed to the same weights, instead of stopping the suite."""
    import torch

    from udabench import checkpoint

    path = write_suite(source_warmup=2)
    run_suite(load_suite(path), tmp_path / "res", methods=["source_only"])
    warmup = next((tmp_path / "res" / "tiny" / "_warmup").glob("seed0-*"))
    snapshot = warmup / "checkpoints" / "last.pt"
    before = checkpoint.segmenter_state(checkpoint.load(snapshot))
    snapshot.write_bytes(b"not a checkpoint")
    run_suite(load_suite(path), tmp_path / "res", methods=["minent"])
    after = checkpoint.segmenter_state(checkpoint.load(snapshot))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert next((tmp_path / "res" / "tiny" / "minent").glob("seed0-*/done")).exists()
