"""The source warm-up is shared: every method of a seed adapts the same source-trained weights.

It is a stage without LR restart (engine/stages.py): an internal run in ``results/<suite>/_warmup/`` trains
the first ``source_warmup`` steps of the schedule, and each method continues that schedule from its final
checkpoint."""

import pytest

from udabench.config import load_suite
from udabench.engine.rundir import RunDir
from udabench.engine.runner import run_suite

VOLATILE = ("time", "step_time", "peak_mem_gb", "run_id", "warmup_from")


def rows(outcome):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in outcome.spec.rundir.rows()]


def test_a_method_after_source_only_loads_its_warmup_and_matches_a_run_of_its_own(write_suite, tmp_path):
    path = write_suite(source_warmup=2, iterations=6)
    shared = run_suite(load_suite(path), tmp_path / "shared", methods=["source_only", "minent"])
    alone = run_suite(load_suite(path), tmp_path / "alone", methods=["minent"])
    minent_shared, minent_alone = shared[1], alone[0]

    warmups = list((tmp_path / "shared" / "tiny" / "_warmup").glob("seed0-*"))
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


def test_the_warmup_key_ignores_the_method_but_not_the_schedule(write_suite, tmp_path):
    from udabench.engine.runner import plan_runs

    specs = plan_runs(load_suite(write_suite(source_warmup=2)), tmp_path, ["source_only", "minent", "oracle"])
    assert specs[0].start.spec is specs[1].start.spec and not specs[0].start.restart   # one shared warm-up
    assert specs[2].start is None                                                     # the oracle has none
    other = plan_runs(load_suite(write_suite(source_warmup=2, lr=0.02)), tmp_path, ["minent"])[0]
    assert other.start.spec.rundir.id != specs[0].start.spec.rundir.id
    assert plan_runs(load_suite(write_suite()), tmp_path, ["minent"])[0].start is None


def test_a_corrupt_warmup_snapshot_is_a_clear_error(write_suite, tmp_path):
    from udabench.errors import CheckpointError

    path = write_suite(source_warmup=2)
    run_suite(load_suite(path), tmp_path / "res", methods=["source_only"])
    warmup = next((tmp_path / "res" / "tiny" / "_warmup").glob("seed0-*"))
    (warmup / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"shared source warm-up.*Delete the folder {warmup}"):
        run_suite(load_suite(path), tmp_path / "res", methods=["minent"])
