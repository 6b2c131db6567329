"""The source warm-up is shared: every method of a seed adapts the same source-trained weights."""

import pytest
import yaml
from helpers import curves, events, texts, tiny_suite_dict

from udabench.config import load_suite
from udabench.engine import checkpoint
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.runner import run_suite

VOLATILE = ("time", *TIMING_FIELDS, "run_id", "warmup_from")


def rows(outcome):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in outcome.spec.rundir.rows()]


@pytest.fixture(scope="module")
def shared_and_alone(tmp_path_factory, tiny_data):
    """MinEnt after Source-only (it loads the shared warm-up) and MinEnt alone (it computes the warm-up)."""
    folder = tmp_path_factory.mktemp("warmup")
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(tiny_suite_dict(tiny_data, source_warmup=2, iterations=6)))
    shared = run_suite(load_suite(path), folder / "shared", methods=["source_only", "minent"])
    alone = run_suite(load_suite(path), folder / "alone", methods=["minent"])
    return folder, shared, alone[0]


def test_a_method_after_source_only_loads_its_warmup_and_matches_doing_it_itself(shared_and_alone):
    folder, shared, minent_alone = shared_and_alone
    minent_shared = shared[1]

    snapshots = list((folder / "shared" / "tiny" / "_warmup").glob("*.pt"))
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


def test_a_loaded_warmup_gives_its_evaluations_to_the_tensorboard_run(shared_and_alone):
    """The loading run's TensorBoard run has the warm-up's evaluations and its own steps; the warm-up's step
    curves are in the run that computed it, which a note names."""
    pytest.importorskip("tensorboard")
    _, shared, minent_alone = shared_and_alone
    written_by = shared[0].spec.rundir.id
    loaded, computed = (events(o.spec.rundir.path) for o in (shared[1], minent_alone))
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
