"""The source warm-up is shared: every method of a seed adapts the same source-trained weights."""

import pytest
from helpers import curves, events, texts

from udabench.config import load_suite
from udabench.engine import checkpoint
from udabench.engine.runner import run_suite

VOLATILE = ("time", "step_time", "peak_mem_gb", "run_id", "warmup_from")


def rows(outcome):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in outcome.spec.rundir.rows()]


def test_a_method_after_source_only_loads_its_warmup_and_matches_doing_it_itself(write_suite, tmp_path):
    path = write_suite(source_warmup=2, iterations=6)
    shared = run_suite(load_suite(path), tmp_path / "shared", methods=["source_only", "minent"])
    alone = run_suite(load_suite(path), tmp_path / "alone", methods=["minent"])
    minent_shared, minent_alone = shared[1], alone[0]

    snapshots = list((tmp_path / "shared" / "tiny" / "_warmup").glob("*.pt"))
    assert len(snapshots) == 1
    written_by = checkpoint.load(snapshots[0])["written_by"]
    assert written_by == shared[0].spec.rundir.id  # source-only finished the warm-up first
    log = (minent_shared.spec.rundir.path / "log.txt").read_text()
    assert "shared source warm-up loaded" in log and "shared source warm-up" not in (
        minent_alone.spec.rundir.path / "log.txt").read_text()

    # Loading the warm-up is exact: same losses and scores as the run that trained its own warm-up.
    assert rows(minent_shared) == rows(minent_alone)
    assert [r["step"] for r in rows(minent_shared)] == [2, 4, 6]
    first = minent_shared.spec.rundir.rows()[0]
    assert first["warmup_from"] == written_by and first["method"] == "minent"
    assert first["miou"] == shared[0].spec.rundir.rows()[0]["miou"]

    # Its TensorBoard run has the loaded evaluations and its own steps; the warm-up's step curves are in the
    # run that computed it (named in a note)
    loaded, computed = (events(o.spec.rundir.path) for o in (minent_shared, minent_alone))
    got, want = curves(loaded), curves(computed)
    assert [s for s, _ in got["eval/mIoU/cityscapes19"]] == [2, 4, 6]
    assert got["eval/mIoU/cityscapes19"] == want["eval/mIoU/cityscapes19"]
    assert [s for s, _ in got["train/loss_seg"]] == [4, 6] and got["train/loss_seg"] == want["train/loss_seg"][1:]
    (step, note), stage = texts(loaded, "stage")
    assert step == 1 and f"written by run {written_by}" in note and stage == (3, "steps 3-6: MinEnt")
    assert texts(computed, "stage") == [(1, "steps 1-2: shared source warm-up"), (3, "steps 3-6: MinEnt")]


def test_the_warmup_key_ignores_the_method_but_not_the_schedule(write_suite, tmp_path):
    from udabench.engine.runner import plan_runs

    specs = plan_runs(load_suite(write_suite(source_warmup=2)), tmp_path, ["source_only", "minent", "oracle"])
    assert len({s.warmup_snapshot for s in specs}) == 1
    other = plan_runs(load_suite(write_suite(source_warmup=2, lr=0.02)), tmp_path, ["minent"])[0]
    assert other.warmup_snapshot != specs[0].warmup_snapshot
    assert plan_runs(load_suite(write_suite()), tmp_path, ["minent"])[0].warmup_snapshot is None


def test_a_corrupt_warmup_snapshot_is_a_clear_error(write_suite, tmp_path):
    from udabench.errors import CheckpointError

    path = write_suite(source_warmup=2)
    run_suite(load_suite(path), tmp_path / "res", methods=["source_only"])
    snapshot = next((tmp_path / "res" / "tiny" / "_warmup").glob("*.pt"))
    snapshot.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Delete that file"):
        run_suite(load_suite(path), tmp_path / "res", methods=["minent"])
