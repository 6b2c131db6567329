import json
from pathlib import Path

import pytest
import torch

from udabench import Method, checkpoint, register
from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.rundata import build_data
from udabench.engine.rundir import RunDir
from udabench.engine.runner import run_suite
from udabench.losses import entropy_map


@register
class Recorder(Method):
    """Test plugin: source CE + a small target entropy term; records every step's loss and target images (read
    and reset through the ``recorder`` fixture)."""

    name = "test_recorder"
    paper = "test"
    description = "records losses"
    calls: list = []                    # (step, loss, whether the target batch has labels)
    targets: dict = {}                  # step -> the target images of that step
    crash_at: int | None = None

    def train_step(self, source, target, step):
        if step == Recorder.crash_at:
            raise KeyboardInterrupt
        with self.ctx.autocast():
            loss, logs = self.ctx.supervised_loss(self.ctx.model(source["image"]), source["label"])
            loss = loss + 0.1 * entropy_map(self.ctx.model(target["image"]).main.softmax(1)).mean()
        self.ctx.backward(loss)
        Recorder.calls.append((step, loss.item(), "label" in target))
        Recorder.targets[step] = target["image"].clone()
        return {"loss": loss.item()}

    @classmethod
    def reset(cls, crash_at: int | None = None) -> None:
        cls.calls, cls.targets, cls.crash_at = [], {}, crash_at


@pytest.fixture
def recorder():
    """``Recorder``, emptied before and after the test."""
    Recorder.reset()
    yield Recorder
    Recorder.reset()


@register
class Exploder(Method):
    name = "test_exploder"
    paper = "test"
    description = "returns a NaN loss at step 1"
    uses_target = False

    def train_step(self, source, target, step):
        loss, logs = self.ctx.supervised_loss(self.ctx.model(source["image"]), source["label"])
        self.ctx.backward(loss)
        return {"loss": float("nan") if step == 1 else loss.item()}


def test_rerunning_a_finished_suite_does_no_training(write_suite, tmp_path):
    suite = load_suite(write_suite())
    first = run_suite(suite, tmp_path / "res", methods=["source_only"])
    assert [o.status for o in first] == ["trained"]
    rundir = first[0].spec.rundir
    assert {p.name for p in rundir.path.iterdir()} >= {"config.yaml", "env.json", "metrics.jsonl", "checkpoints", "done"}
    rows = rundir.rows()
    assert [r["step"] for r in rows] == [2, 4]
    assert set(rows[-1]["class_sets"]["cityscapes19"]["iou"]) == set(suite_class_names())
    mtime = rundir.checkpoint.stat().st_mtime_ns
    second = run_suite(load_suite(write_suite()), tmp_path / "res", methods=["source_only"])
    assert [o.status for o in second] == ["skipped"]
    assert rundir.checkpoint.stat().st_mtime_ns == mtime and rundir.rows() == rows


def suite_class_names():
    from udabench.data import CLASS_SETS
    return CLASS_SETS["cityscapes19"].names


def test_run_id_depends_on_config_not_on_other_methods(write_suite, tmp_path):
    a = make_plan(load_suite(write_suite()), tmp_path, ["source_only"]).requested[0].rundir
    b = make_plan(load_suite(write_suite(lambda s: s["methods"].update(test_recorder={}))), tmp_path,
                  ["source_only"]).requested[0].rundir
    c = make_plan(load_suite(write_suite(lr=0.02)), tmp_path, ["source_only"]).requested[0].rundir
    assert a.id == b.id != c.id and a.id.startswith("seed0-")


def test_run_id_changes_with_the_synthetic_generator(tmp_path, monkeypatch):
    """New scenes under the same knobs must not be mistaken for finished runs (or warm-ups) of the old ones."""
    import udabench.engine.identity as identity

    toy = Path(__file__).resolve().parent.parent / "suites" / "toy_sim2real.yaml"
    before = make_plan(load_suite(toy), tmp_path, ["minent"]).requested[0]
    monkeypatch.setattr(identity, "GENERATOR_VERSION", identity.GENERATOR_VERSION + 1)
    after = make_plan(load_suite(toy), tmp_path, ["minent"]).requested[0]
    assert before.rundir.id != after.rundir.id and before.start.spec.rundir.id != after.start.spec.rundir.id


def test_resume_gives_the_same_next_loss_as_an_uninterrupted_run(write_suite, tmp_path, recorder):
    suite = lambda: load_suite(write_suite())
    run_suite(suite(), tmp_path / "straight", methods=["test_recorder"])
    straight = list(recorder.calls)

    recorder.reset(crash_at=2)  # checkpoint after 2 steps, then interrupted
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite(), tmp_path / "resumed", methods=["test_recorder"])
    recorder.crash_at = None
    outcome = run_suite(suite(), tmp_path / "resumed", methods=["test_recorder"])[0]
    resumed = recorder.calls
    assert [s for s, _, _ in resumed] == [0, 1, 2, 3]  # steps 0-1, interrupted, resumed at 2
    assert resumed[2][1] == straight[2][1]  # bit-identical next loss after resume
    assert resumed[3][1] == straight[3][1]
    assert [r["step"] for r in outcome.spec.rundir.rows()] == [2, 4]


def test_target_labels_are_withheld_from_unsupervised_methods(write_suite, tmp_path, recorder):
    run_suite(load_suite(write_suite()), tmp_path, methods=["test_recorder"])
    assert recorder.calls and not any(has_label for _, _, has_label in recorder.calls)


class ExplodingDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise AssertionError("source-only must never load a target image")


def test_source_only_never_feeds_target_images_to_the_model(write_suite, tmp_path, monkeypatch):
    """BN isolation (AdaptSegNet#25): target images never pass through the model in train mode."""
    import udabench.engine.rundata as rundata

    real_build = rundata.build_data

    def build(suite, needs_target=True):
        data = real_build(suite, needs_target)
        data.target = ExplodingDataset()
        return data

    monkeypatch.setattr(rundata, "build_data", build)
    # The label-free validators score every method, Source-only too, on target training images, in eval mode (BN
    # statistics frozen: the next test); without them, Source-only loads no target image at all.
    suite = write_suite(lambda s: s.update(validators={"images": 0}))
    outcome = run_suite(load_suite(suite), tmp_path, methods=["source_only"])[0]
    assert outcome.status == "trained"


def test_source_only_bn_statistics_do_not_depend_on_target_data(write_suite, tmp_path, tiny_data):
    from helpers import write_cityscapes

    other = write_cityscapes(tmp_path / "other_cs", {"train": 6, "val": 4}, seed=99)
    states = []
    for i, root in enumerate([tiny_data["cityscapes"], other]):
        path = write_suite(lambda s, root=root: s["data"]["target"].update(root=str(root)))
        outcome = run_suite(load_suite(path), tmp_path / f"r{i}", methods=["source_only"])[0]
        states.append(checkpoint.segmenter_state(checkpoint.load(outcome.spec.rundir.checkpoint)))
    bn_keys = [k for k in states[0] if "running_mean" in k or "running_var" in k]
    assert bn_keys and all(torch.equal(states[0][k], states[1][k]) for k in bn_keys)


def test_nan_loss_marks_the_run_failed_and_other_runs_go_on(write_suite, tmp_path):
    outcomes = run_suite(load_suite(write_suite()), tmp_path, methods=["test_exploder", "source_only"])
    assert [o.status for o in outcomes] == ["failed", "trained"]
    failed = outcomes[0].spec.rundir
    message = failed.failed_marker.read_text()
    assert "step 1" in message and "loss=nan" in message and "not applied" in message
    assert not failed.done_marker.exists()


def test_eval_labels_keep_native_resolution(write_suite):
    data = build_data(load_suite(write_suite()))
    item = data.eval[0]
    assert item["image"].shape == (3, 32, 64) and item["label"].shape == (40, 80)
    train_item = data.source[0]
    assert train_item["label"].shape == (32, 64)


def test_metrics_rows_are_self_describing(write_suite, tmp_path):
    outcome = run_suite(load_suite(write_suite()), tmp_path, methods=["oracle"])[0]
    row = json.loads(outcome.spec.rundir.metrics.read_text().splitlines()[-1])
    assert row["method"] == "oracle" and row["method_label"] == "Oracle" and row["seed"] == 0
    assert row["protocol"]["aspp_dilations"] == [6, 12, 18, 24] and row["protocol"]["eval_label_size"] == "native"
    assert len(row["confusion"]) == 19 and row["step_time"] > 0 and row["peak_mem_gb"] > 0
    assert 0 <= row["target_entropy"] <= 1 and "loss_seg" in row["losses"]


@pytest.mark.parametrize("start", [0, 3])   # from the start, and resumed at step 3
def test_n_processes_at_batch_b_read_what_one_process_reads_at_batch_n_times_b(start):
    """README "Several GPUs per run": 4 processes at batch 1 read, step by step, the very images one process reads
    at batch 4 (so the effective batch, not the world size, decides what a step sees)."""
    from types import SimpleNamespace

    from udabench.config import AugmentConfig, TrainConfig
    from udabench.engine.distributed import DistInfo
    from udabench.engine.rundata import RunData

    images = list(range(10))                  # 6 steps of 4 cross two epochs of 10

    def read(world, rank, batch):
        suite = SimpleNamespace(augment=AugmentConfig(), data=SimpleNamespace(num_workers=0),
                                train=TrainConfig(batch_size=batch))   # uniform sampling
        spec = SimpleNamespace(seed=5, suite=suite, teacher=None,
                               method=SimpleNamespace(uses_source=True, uses_target=False))
        data = RunData(spec, SimpleNamespace(source=images), torch.device("cpu"), DistInfo(rank=rank, world_size=world))
        data.prepare()   # only what the run's stream opening reads
        return [next(data._stream("source", step)).tolist() for step in range(start, start + 6)]

    one = read(1, 0, 4)
    four = [read(4, rank, 1) for rank in range(4)]
    assert [[four[rank][step][0] for rank in range(4)] for step in range(6)] == one   # rank r: the r-th image
    assert len({tuple(batch) for batch in one}) > 1                 # the steps do read different images


def test_two_process_distributed_run_on_cpu(write_suite, tmp_path):
    """torchrun with 2 CPU ranks (gloo): gradients averaged, eval sharded and all-reduced, rank 0 writes."""
    import subprocess
    import sys

    path = write_suite()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",   # a free port
           "-m", "udabench", "run", str(path), "--methods", "source_only", "--results", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("runs finished") == 1
    single = run_suite(load_suite(path), tmp_path / "single", methods=["source_only"])[0].spec.rundir
    ddp_dir = next((tmp_path / "ddp").glob("tiny/source_only/*/metrics.jsonl")).parent
    ddp_rows = ddp_dir.joinpath("metrics.jsonl").read_text().splitlines()
    ddp_cm = json.loads(ddp_rows[-1])["confusion"]
    single_cm = single.rows()[-1]["confusion"]
    assert len(ddp_rows) == 2 and sum(map(sum, ddp_cm)) == sum(map(sum, single_cm))  # every eval pixel once

    # World size is part of the run: its own id (single-process ids unchanged), protocol and environment.
    ddp_protocol, single_protocol = json.loads(ddp_rows[-1])["protocol"], single.rows()[-1]["protocol"]
    assert ddp_dir.name != single.id and "world_size" not in single.identity["run"]
    assert RunDir.open(ddp_dir).world_size == 2
    assert (ddp_protocol["world_size"], ddp_protocol["effective_batch_size"]) == (2, 4)      # batch_size 2 each
    assert (single_protocol["world_size"], single_protocol["effective_batch_size"]) == (1, 2)
    assert json.loads(ddp_dir.joinpath("env.json").read_text())["world_size"] == 2
    assert json.loads(single.path.joinpath("env.json").read_text())["world_size"] == 1
    assert checkpoint.load(ddp_dir / "checkpoints" / "last.pt")["world_size"] == 2


def test_source_warmup_then_same_target_batches_as_without_warmup_and_an_exact_resume(write_suite, tmp_path,
                                                                                   recorder):
    """Warm-up steps are plain source steps; afterwards step s sees the target batch that a run without warm-up
    sees at step s (the warm-up skips the target stream's first batches, it does not delay the stream). A run
    interrupted after its warm-up resumes to the rows of a straight one."""
    run_suite(load_suite(write_suite()), tmp_path / "none", methods=["test_recorder"])
    without = recorder.targets
    assert [s for s, _, _ in recorder.calls] == [0, 1, 2, 3] and not torch.equal(without[0], without[2])
    recorder.reset()
    run_suite(load_suite(write_suite(source_warmup=2)), tmp_path / "w", methods=["test_recorder"])
    assert [s for s, _, _ in recorder.calls] == [2, 3]  # the method's own step only after warm-up
    assert all(torch.equal(recorder.targets[s], without[s]) for s in (2, 3))

    recorder.reset(crash_at=3)  # interrupted after the checkpoint at step 2, then resumed
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite(write_suite(source_warmup=2)), tmp_path / "r", methods=["test_recorder"])
    recorder.crash_at = None
    run_suite(load_suite(write_suite(source_warmup=2)), tmp_path / "r", methods=["test_recorder"])
    straight = run_suite(load_suite(write_suite(source_warmup=2)), tmp_path / "w", methods=["test_recorder"])
    assert straight[0].status == "skipped"
    resumed_rows = next((tmp_path / "r").glob("tiny/test_recorder/*")).joinpath("metrics.jsonl").read_text()
    straight_rows = straight[0].spec.rundir.metrics.read_text()
    strip = lambda text: [{k: v for k, v in json.loads(l).items() if k not in ("time", *TIMING_FIELDS)}
                          for l in text.splitlines()]
    assert strip(resumed_rows) == strip(straight_rows)
