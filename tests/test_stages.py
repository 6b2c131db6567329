"""Stages: a run starts from another finished run's final weights with a fresh schedule (LR restarted, optimizer
reset), the source stage is trained once for every run that starts from it, and a self-distillation student
starts fresh and learns only from a teacher run's hard labels."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from helpers import tiny_suite_dict

from udabench import Method, checkpoint, register
from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.engine.runner import run_suite
from udabench.engine.trained import final_model
from udabench.engine.trainer import Trainer
from udabench.losses import entropy_map
from udabench.models import build_model
from udabench.registry import discover


@register
class Probe(Method):
    """Test plugin: source CE + target entropy; records, per step, the LRs it is given, and at its first step the
    model's weights and whether the segmenter's optimizer holds any state (momentum)."""

    name = "test_probe"
    display_name = "Probe"
    paper = "test"
    description = "records LRs, first weights and optimizer state"
    seen: list = []

    def train_step(self, source, target, step):
        optimizer = self.ctx.slots["model"].optimizer
        if not Probe.seen or Probe.seen[-1]["step"] >= step:
            Probe.seen.append({"step": step, "lrs": [], "weights": copy.deepcopy(self.ctx.model.state_dict()),
                               "optimizer_state": len(optimizer.state)})
        Probe.seen[-1]["lrs"].append([g["lr"] for g in optimizer.param_groups])
        Probe.seen[-1]["step"] = step
        with self.ctx.autocast():
            loss, logs = self.ctx.supervised_loss(self.ctx.model(source["image"]), source["label"])
            loss = loss + 0.1 * entropy_map(self.ctx.model(target["image"]).main.softmax(1)).mean()
        self.ctx.backward(loss)
        return logs


def two_stage(tiny_data, **stages) -> dict:
    """Source-only for 3 steps at LR 0.02, then the probe from its final weights: 4 steps at LR 0.005 over a poly
    horizon of 8 (``stages`` adds or replaces stage blocks)."""
    suite = tiny_suite_dict(tiny_data, iterations=4, eval_every=2, checkpoint_every=2)
    suite["methods"], suite["oracle"] = {"source_only": {}, "test_probe": {}, "minent": {}}, False
    suite["stages"] = {"source_only": {"train": {"iterations": 3, "lr": 0.02}},
                       "test_probe": {"start_from": "source_only", "train": {"lr": 0.005, "poly_horizon": 8}},
                       **stages}
    return suite


def write(tmp_path, suite: dict, name: str = "suite.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    return path


def test_an_adaptation_stage_starts_from_the_source_stages_final_weights_with_a_fresh_schedule(tiny_data, tmp_path):
    Probe.seen = []
    outcomes = run_suite(load_suite(write(tmp_path, two_stage(tiny_data))), tmp_path / "r", methods=["test_probe"])
    source, probe = (o.spec.rundir for o in outcomes)
    assert [o.spec.method.name for o in outcomes] == ["source_only", "test_probe"]   # the stage it needs, first

    final = checkpoint.load(source.checkpoint)
    assert final["step"] == 3 and final["slots"]["model"]["optimizer"]["state"]        # momentum was there ...
    first = Probe.seen[0]
    assert first["optimizer_state"] == 0                                               # ... and is reset
    weights = checkpoint.segmenter_state(final)
    assert weights.keys() == first["weights"].keys()
    assert all(torch.equal(weights[k], first["weights"][k]) for k in weights)          # BN statistics included

    # The LR restarts at the stage's own base LR and decays as poly 0.9 over its own horizon (8), heads at 10x.
    expected = [[0.005 * (1 - s / 8) ** 0.9, 0.05 * (1 - s / 8) ** 0.9] for s in range(4)]
    assert sum(first["lrs"], []) == pytest.approx(sum(expected, []), rel=1e-12)
    assert [r["lr"] for r in probe.rows()] == pytest.approx([expected[1][0], expected[3][0]], rel=1e-12)
    assert [r["step"] for r in source.rows()] == [2, 3] and [r["step"] for r in probe.rows()] == [2, 4]

    row = probe.rows()[-1]
    assert row["method_label"] == "Source-only → Probe"
    chain = row["protocol"]["stages"]
    assert [(s["method"], s["start"], s["iterations"], s["lr"], s["poly_horizon"]) for s in chain] == [
        ("source_only", "init", 3, 0.02, 3), ("test_probe", "restart", 4, 0.005, 8)]
    assert chain[0]["run_id"] == source.id and probe.run["start_from"]["run"] == source.id
    assert probe.run["stage"] == {"train.lr": 0.005, "train.poly_horizon": 8}
    assert probe.suite().train.poly_horizon == 8 and source.suite().train.iterations == 3   # rebuilt from identity


def test_the_source_stage_is_trained_once_for_every_method_that_starts_from_it(tiny_data, tmp_path, monkeypatch):
    suite = two_stage(tiny_data, minent={"start_from": "source_only"})
    path = write(tmp_path, suite)
    trained = []
    real_run = Trainer.run
    monkeypatch.setattr(Trainer, "run", lambda self: trained.append(self.spec.method.name) or real_run(self))
    first = run_suite(load_suite(path), tmp_path / "r", methods=["test_probe", "minent"])
    assert trained == ["source_only", "test_probe", "minent"]
    assert [(o.spec.method.name, o.status) for o in first] == [("source_only", "trained"), ("test_probe", "trained"),
                                                              ("minent", "trained")]
    assert first[1].spec.start.spec is first[2].spec.start.spec
    again = run_suite(load_suite(path), tmp_path / "r")
    assert trained == ["source_only", "test_probe", "minent"] and {o.status for o in again} == {"skipped"}

    # The chain is part of every later run's identity: another source stage makes other runs downstream.
    suite["stages"]["source_only"]["train"]["lr"] = 0.03
    other = make_plan(load_suite(write(tmp_path, suite, "other.yaml")), tmp_path / "r", ["minent"]).requested[0]
    assert other.rundir.id != first[2].spec.rundir.id and other.start.spec.rundir.id != first[0].spec.rundir.id


def test_a_failed_source_stage_stops_the_runs_that_start_from_it(tiny_data, tmp_path, monkeypatch):
    src = discover()["source_only"]

    def explode(self, source, target, step):
        raise RuntimeError("boom")

    monkeypatch.setattr(src, "train_step", explode)
    outcomes = run_suite(load_suite(write(tmp_path, two_stage(tiny_data))), tmp_path / "r", methods=["test_probe"])
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert "source_only seed 0, which it starts from, failed" in outcomes[1].message
    assert not outcomes[1].spec.rundir.path.exists()    # never started


@register
class Watcher(Method):
    """Self-distillation as the built-in does it, recording what the student sees."""

    name = "test_student"
    paper = "test"
    description = "records its first weights and batches"
    uses_source = False
    uses_teacher_labels = True
    seen: list = []

    def train_step(self, source, target, step):
        Watcher.seen.append({"step": step, "source": source, "target": {k: v for k, v in target.items()},
                             "weights": copy.deepcopy(self.ctx.model.state_dict()) if not Watcher.seen else None})
        return self.ctx.supervised_step({"image": target["image"], "label": target["pseudo_label"]})


def test_a_self_distillation_student_starts_fresh_and_learns_only_from_the_teachers_labels(tiny_data, tmp_path):
    suite = tiny_suite_dict(tiny_data, iterations=3, eval_every=3, checkpoint_every=3)
    suite["methods"], suite["oracle"] = {"source_only": {}, "test_student": {}}, False
    suite["stages"] = {"test_student": {"teacher": "source_only", "train": {"iterations": 2, "lr": 0.005}}}
    Watcher.seen = []
    teacher, student = (o.spec for o in run_suite(load_suite(write(tmp_path, suite)), tmp_path / "r",
                                                   methods=["test_student"]))
    assert student.teacher is teacher and student.start is None

    # Fresh: the student's first weights are the init weights of its seed, not the teacher's final ones.
    torch.manual_seed(0)
    fresh = build_model(student.suite.model, 19).state_dict()
    taught = checkpoint.segmenter_state(checkpoint.load(teacher.rundir.checkpoint))
    first = Watcher.seen[0]["weights"]
    assert all(torch.equal(first[k], fresh[k]) for k in fresh)
    assert not all(torch.equal(first[k], taught[k]) for k in taught)

    # Only the teacher's labels: no source batch, no target ground truth, and each pseudo-label is the argmax
    # of the teacher's final model on that image (logits up-sampled bilinearly to the label size).
    teacher_model = final_model(teacher.rundir, "cpu")
    for seen in Watcher.seen:
        batch = seen["target"]
        assert seen["source"] is None and "label" not in batch and "pseudo_label" in batch
        with torch.no_grad():
            logits = teacher_model(batch["image"]).main
            expected = torch.nn.functional.interpolate(logits, size=batch["image"].shape[-2:], mode="bilinear",
                                                       align_corners=False).argmax(1)
        assert torch.equal(batch["pseudo_label"], expected)
    row = student.rundir.rows()[-1]
    assert row["method_label"] == "Source-only → test_student"
    assert [s["start"] for s in row["protocol"]["stages"]] == ["init", "teacher"]
    assert (student.rundir.path / "pseudo_labels" / "manifest.json").exists()


def test_the_teacher_labels_images_read_as_its_evaluation_reads_them(tiny_data, tmp_path):
    """A student on full-size images: the teacher sees each image resized by the dataset reader to its own eval
    input (PIL bicubic on the uint8 image, FADA test.py → transform.py:57), its logits up-sampled to the image."""
    import numpy as np
    from PIL import Image

    from udabench.data import get_dataset

    suite = tiny_suite_dict(tiny_data, iterations=2, eval_every=2, checkpoint_every=2)
    suite["methods"], suite["oracle"] = {"source_only": {}, "test_student": {}}, False
    suite["stages"] = {"test_student": {"teacher": "source_only", "data": {"target": {"size": None}}}}
    Watcher.seen = []
    teacher, student = (o.spec for o in run_suite(load_suite(write(tmp_path, suite)), tmp_path / "r",
                                                   methods=["test_student"]))
    model = final_model(teacher.rundir, "cpu")
    read = get_dataset("cityscapes", tiny_data["cityscapes"], "train", size=[64, 32])
    for index in range(len(read)):
        label = np.asarray(Image.open(student.rundir.path / "pseudo_labels" / f"{index:06d}.png"))
        with torch.no_grad():
            logits = model(read[index]["image"][None]).main
        expected = torch.nn.functional.interpolate(logits, size=label.shape, mode="bilinear").argmax(1)[0]
        assert label.shape == (40, 80) and torch.equal(torch.from_numpy(label.astype(np.int64)), expected)


def test_stage_settings_are_checked_with_clear_errors(tiny_data, tmp_path):
    from udabench.errors import ConfigError

    cases = [
        ({"oracle_x": {"start_from": "source_only"}}, "stages.oracle_x: 'oracle_x' is not one of the suite's methods"),
        ({"test_probe": {"start_from": "test_probe"}}, "stages.test_probe.start_from is 'test_probe', its own"),
        ({"test_probe": {"start_from": "minent"}, "minent": {"start_from": "test_probe"}}, "stages make a cycle"),
        ({"test_probe": {"start_from": "minent", "teacher": "minent"}}, "both start_from and teacher"),
        ({"test_probe": {"train": {"iterations": 8, "poly_horizon": 4}}}, "poly_horizon (4) is less than"),
        ({"test_probe": {"train": {"iteratons": 8}}}, "(stages.test_probe): unknown key 'train.iteratons'"),
    ]
    for stages, message in cases:
        suite = two_stage(tiny_data)
        suite["stages"] = stages
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_suite(write(tmp_path, suite))
    suite = two_stage(tiny_data, minent={"teacher": "source_only"})
    with pytest.raises(ConfigError, match="'minent' has no use for a teacher"):
        make_plan(load_suite(write(tmp_path, suite)), tmp_path, ["minent"]).requested
    suite = two_stage(tiny_data)
    suite["methods"]["self_distill"] = {}
    with pytest.raises(ConfigError, match="'self_distill' learns from a teacher run"):
        make_plan(load_suite(write(tmp_path, suite)), tmp_path, ["self_distill"]).requested


def test_poly_horizon_decays_the_lr_as_over_a_longer_schedule(write_suite):
    from udabench.engine.build import build_run

    suite = load_suite(write_suite(iterations=4, poly_horizon=10, lr=0.01))
    ctx, _ = build_run(suite, discover()["source_only"], discover()["source_only"].Hparams(), torch.device("cpu"))
    assert [ctx.start_step(s) for s in range(4)] == pytest.approx([0.01 * (1 - s / 10) ** 0.9 for s in range(4)])


def test_the_embedded_two_stage_recipe_adapts_from_the_source_stage_with_the_lr_restarted(tmp_path, monkeypatch):
    """suites/toy_two_stage.yaml (the embedded suite as a two-stage recipe), shrunk: Source-only is trained once for
    both methods that start from it, and each starts from exactly its final weights with a fresh optimizer."""
    from pathlib import Path

    monkeypatch.setenv("UDABENCH_CACHE", str(tmp_path / "cache"))
    toy = Path(__file__).resolve().parent.parent / "suites" / "toy_two_stage.yaml"
    small = ["synthetic.num_source=8", "synthetic.num_target_train=8", "synthetic.num_target_val=4",
             "methods.test_probe={}", "stages.test_probe={start_from: source_only, train: {lr: 0.004}}"]
    suite = load_suite(toy, small, quick=True)
    assert suite.stages["minent"].start_from == "source_only" and suite.train.source_warmup == 0
    trained, real_run = [], Trainer.run
    monkeypatch.setattr(Trainer, "run", lambda self: trained.append(self.spec.method.name) or real_run(self))
    Probe.seen = []
    outcomes = run_suite(suite, tmp_path / "r", methods=["test_probe", "minent"])
    assert trained == ["source_only", "test_probe", "minent"]                # the source stage once, first
    source = outcomes[0].spec.rundir
    assert all(o.spec.start.spec.rundir.id == source.id and o.spec.start.restart for o in outcomes[1:])
    weights = checkpoint.segmenter_state(checkpoint.load(source.checkpoint))
    first = Probe.seen[0]
    assert first["optimizer_state"] == 0 and all(torch.equal(weights[k], first["weights"][k]) for k in weights)
    steps = suite.train.iterations
    expected = [[0.004 * (1 - s / steps) ** 0.9, 0.04 * (1 - s / steps) ** 0.9] for s in range(steps)]
    assert sum(first["lrs"], []) == pytest.approx(sum(expected, []), rel=1e-12)
    label = outcomes[2].spec.rundir.rows()[-1]["method_label"]
    assert label == "Source-only → MinEnt"
