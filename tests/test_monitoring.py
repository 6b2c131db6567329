"""Watching a run while it trains (engine/loggers.py, engine/monitor.py): TensorBoard event files read back
with TensorBoard's own reader, W&B and MLflow through fakes (never the real services), logger settings outside
the run identity, and the pace (steps/s, ETA) of the text log lines.

Elsewhere: curves continued across a kill and a resume (test_run_integrity.py), a loaded shared warm-up's
evaluations (test_shared_warmup.py), the embedded suite's metrics with and without loggers (test_cli.py)."""

import importlib.machinery
import io
import os
import subprocess
import sys
import textwrap
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import curves, events, texts, tiny_suite_dict
from PIL import Image

from udabench import checkpoint
from udabench.classes import CLASS_SETS
from udabench.config import TrainConfig, load_suite
from udabench.engine.loggers import RunInfo, open_loggers
from udabench.engine.monitor import Pace, duration, step_scalars
from udabench.engine.plan import make_plan
from udabench.engine.rundata import build_data
from udabench.engine.runner import run_suite
from udabench.errors import ConfigError
from udabench.tracking import PACKAGES, default_loggers

TIMING_TAGS = ("time/step_s", "time/data_s", "time/compute_s", "time/images_per_s")
ROOT = Path(__file__).resolve().parent.parent


def write(folder, suite: dict):
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


# -- settings ------------------------------------------------------------------------------------------------

def test_logger_settings_are_not_part_of_a_run_identity(write_suite, tmp_path):
    ids = set()
    for loggers, images in (([], 3), (["tensorboard"], 3), (["tensorboard", "mlflow"], 0)):
        suite = load_suite(write_suite(loggers=loggers, panel_images=images))
        rundir = make_plan(suite, tmp_path, ["source_only"]).requested[0].rundir
        assert "loggers" not in rundir.identity["suite"]["train"]
        assert "panel_images" not in rundir.identity["suite"]["train"]
        assert "log_every" in rundir.identity["suite"]["train"]      # the rest of train.* stays in
        ids.add(rundir.id)
    assert len(ids) == 1


def test_the_schema_offers_every_backend_and_defaults_to_tensorboard_where_importable(monkeypatch):
    choices = typing.get_args(typing.get_args(typing.get_type_hints(TrainConfig)["loggers"])[0])
    assert set(choices) == set(PACKAGES) == {"tensorboard", "wandb", "mlflow"}
    monkeypatch.setitem(sys.modules, "tensorboard", fake_module("tensorboard"))   # importable
    assert TrainConfig().loggers == ["tensorboard"]
    monkeypatch.setitem(sys.modules, "tensorboard", None)             # import tensorboard now fails
    assert TrainConfig().loggers == [] and default_loggers() == []


def test_without_tensorboard_every_module_imports_and_naming_it_is_a_clear_error():
    """tensorboard is an optional extra: in a process where it cannot be imported (as where it is not
    installed), every udabench module imports, no logger is the default, and asking for it is a ConfigError."""
    script = textwrap.dedent("""
        import importlib, pkgutil, sys
        sys.modules["tensorboard"] = None                 # `import tensorboard` fails, find_spec finds nothing
        import udabench
        for module in pkgutil.walk_packages(udabench.__path__, "udabench."):
            if not module.name.endswith("__main__"):      # that one runs the command line
                importlib.import_module(module.name)
        from udabench.config import TrainConfig
        from udabench.tracking import check_loggers
        from udabench.errors import ConfigError
        assert TrainConfig().loggers == [], TrainConfig().loggers
        try:
            check_loggers(["tensorboard"], "suite.yaml")
        except ConfigError as exc:
            print(exc)
        assert "torch.utils.tensorboard" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "train.loggers names 'tensorboard'" in done.stdout and "pip install 'udabench[tracking]'" in done.stdout


def test_a_named_logger_without_its_package_stops_the_suite_before_training(write_suite, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)                   # not installed
    with pytest.raises(ConfigError, match=r"train.loggers names 'wandb'.*pip install wandb.*train.loggers=\[\]"):
        run_suite(load_suite(write_suite(loggers=["wandb"])), tmp_path / "r", methods=["source_only"])
    assert not list(tmp_path.rglob("config.yaml"))                   # no run was started


# -- what a run logs --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def advent_run(tmp_path_factory, tiny_data):
    """AdvEnt (a method with modules of its own) on the tiny suite, with the default loggers (TensorBoard),
    scoring a subset class set besides the 19 classes."""
    pytest.importorskip("tensorboard")
    suite = tiny_suite_dict(tiny_data, iterations=4, eval_every=2, checkpoint_every=2, log_every=2)
    suite["eval_class_sets"] = ["synthia13"]
    return run_suite(load_suite(write(tmp_path_factory.mktemp("suite"), suite)), tmp_path_factory.mktemp("res"),
                     methods=["advent"])[0].spec.rundir


def test_event_files_hold_every_curve_at_its_steps(advent_run):
    rundir = advent_run
    assert rundir.tb_dir.is_dir()
    rows = {r["step"]: r for r in rundir.rows()}
    suite, hparams = rundir.suite(), rows[4]["hparams"]
    got = curves(events(rundir.path))
    # every loss term, at the log steps: with log_every == eval_every the window is the row's
    losses = set(rows[4]["losses"])
    assert {"loss_seg", "loss_adv", "loss_d"} <= losses
    for name in losses:
        assert got[f"train/{name}"] == [(s, pytest.approx(rows[s]["losses"][name], rel=1e-6)) for s in (2, 4)]
    # the learning rate of every registered module: the poly schedule, written out here
    slots = checkpoint.load(rundir.checkpoint)["slots"]
    assert set(slots) == {"model", "d_main", "d_aux"}
    poly = {s: (1 - (s - 1) / 4) ** 0.9 for s in (2, 4)}
    bases = {"lr/model": suite.train.lr, "lr/model/group1": suite.train.lr * suite.train.head_lr_mult,
             "lr/d_main": hparams["d_lr"], "lr/d_aux": hparams["d_lr"]}
    for tag, base in bases.items():
        assert got[tag] == [(s, pytest.approx(base * poly[s], rel=1e-6)) for s in (2, 4)]
    assert not [t for t in got if t.startswith("lr/") and t not in bases]
    # timings: 2 source + 2 target images per step
    for tag in TIMING_TAGS:
        assert [s for s, _ in got[tag]] == [2, 4] and all(v > 0 for _, v in got[tag])
    for (_, rate), (_, step_s) in zip(got["time/images_per_s"], got["time/step_s"]):
        assert rate * step_s == pytest.approx(4, rel=1e-5)
    assert not any(t.startswith("memory/") for t in got)          # GPU memory: CUDA only
    # every evaluation: mIoU of each class set, per-class IoU, target entropy
    assert set(rows[4]["class_sets"]) == {"cityscapes19", "synthia13"}
    for name in rows[4]["class_sets"]:
        assert got[f"eval/mIoU/{name}"] == [(s, pytest.approx(rows[s]["class_sets"][name]["miou"], rel=1e-6))
                                            for s in (2, 4)]
    assert got["eval/target_entropy"] == [(s, pytest.approx(rows[s]["target_entropy"], rel=1e-6)) for s in (2, 4)]
    for name in CLASS_SETS["cityscapes19"].names:
        expected = [(s, pytest.approx(rows[s]["class_sets"]["cityscapes19"]["iou"][name], rel=1e-6)) for s in (2, 4)
                    if rows[s]["class_sets"]["cityscapes19"]["iou"][name] is not None]
        assert got.get(f"iou/{name}", []) == expected


def test_each_evaluation_logs_a_panel_of_fixed_target_eval_images(advent_run):
    rundir = advent_run
    images = events(rundir.path).Images("eval/panel")
    assert [e.step for e in images] == [2, 4]
    panel = np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string)).convert("RGB"))
    w, h = rundir.suite().data.eval.size
    assert panel.shape == (3 * h, 4 * w, 3)                 # 3 images (default), 4 columns each
    palette = np.zeros((256, 3), dtype=np.uint8)            # class colours; ignored pixels black
    palette[: len(CLASS_SETS["cityscapes19"].colors)] = CLASS_SETS["cityscapes19"].colors
    eval_set = build_data(rundir.suite()).eval
    for row, index in enumerate([0, 1, 2]):                 # 4 eval images: spread over the split
        label = eval_set[index]["label"].numpy().astype(np.uint8)
        truth = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
        block = panel[row * h:(row + 1) * h]
        assert np.array_equal(block[:, w:2 * w], palette[truth])              # column 2: ground truth
        prediction = block[:, 2 * w:3 * w].reshape(-1, 3)                      # column 3: class colours only
        assert {tuple(c) for c in prediction} <= {tuple(c) for c in palette[: len(CLASS_SETS['cityscapes19'].colors)]}
    assert not np.array_equal(images[0].encoded_image_string, images[1].encoded_image_string)  # the model moved


def test_a_run_is_named_and_its_stages_noted(advent_run):
    accumulator = events(advent_run.path)
    (step, run), = texts(accumulator, "run")
    assert step == 0 and "**AdvEnt** (`advent`), seed 0, suite `tiny`" in run and "lambda_adv" in run
    assert texts(accumulator, "stage") == [(1, "steps 1-4: AdvEnt")]


def test_log_lines_carry_the_pace_without_a_terminal(advent_run):
    lines = [line for line in (advent_run.path / "log.txt").read_text().splitlines() if " step " in line]
    assert len(lines) == 2 and all(" it/s  ETA " in line for line in lines)    # pytest's output is no terminal
    assert lines[-1].endswith("ETA 0:00:00")
    assert "loggers (TensorBoard):" in (advent_run.path / "log.txt").read_text()


def test_pace_reports_recent_steps_per_second_and_time_left_at_the_mean_rate(monkeypatch):
    clock = iter([0.0, 10.0, 50.0])
    monkeypatch.setattr("udabench.engine.monitor.time.perf_counter", lambda: next(clock))
    pace = Pace(0, 100)
    assert pace.line(10) == "1.00 it/s  ETA 0:01:30"
    assert pace.line(30) == "0.50 it/s  ETA 0:01:57"        # 70 steps at 30/50 steps/s
    assert duration(3725) == "1:02:05" and duration(90061) == "1d 1:01:01" and duration(float("inf")) == "?"


# -- W&B and MLflow, through fakes ---------------------------------------------------------------------------------

class FakeWandbRun:
    def __init__(self, calls):
        self.calls = calls

    def log(self, values, step):
        self.calls.append(("log", step, values))

    def finish(self):
        self.calls.append(("finish",))


def fake_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)       # importlib.util.find_spec finds it
    module.__dict__.update(attributes)
    return module


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = []

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeWandbRun(calls)

    image = type("Image", (), {"__init__": lambda self, picture: setattr(self, "picture", picture)})
    html = type("Html", (), {"__init__": lambda self, text: setattr(self, "text", text)})
    monkeypatch.setitem(sys.modules, "wandb", fake_module("wandb", init=init, Image=image, Html=html))
    return calls


class FakeMlflowClient:
    runs: dict = {}          # run id -> {"tags", "metrics", "artifacts", "status"}: one tracking store

    def get_experiment_by_name(self, name):
        return types.SimpleNamespace(experiment_id="1") if name == "tiny" and self.runs else None

    def create_experiment(self, name):
        return "1"

    def search_runs(self, experiment_ids, filter_string):
        wanted = filter_string.split("'")[1]
        return [types.SimpleNamespace(info=types.SimpleNamespace(run_id=i)) for i, r in self.runs.items()
                if r["tags"]["udabench_run"] == wanted]

    def create_run(self, experiment_id, run_name, tags):
        run_id = f"mlflow{len(self.runs)}"
        self.runs[run_id] = {"name": run_name, "tags": tags, "metrics": [], "artifacts": [], "status": "RUNNING"}
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id))

    def log_batch(self, run_id, metrics):
        self.runs[run_id]["metrics"] += [(m.key, m.step, m.value) for m in metrics]

    def log_image(self, run_id, image, artifact_file):
        self.runs[run_id]["artifacts"].append((artifact_file, image.shape))

    def log_text(self, run_id, text, artifact_file):
        self.runs[run_id]["artifacts"].append((artifact_file, text))

    def set_terminated(self, run_id):
        self.runs[run_id]["status"] = "FINISHED"


@pytest.fixture
def fake_mlflow(monkeypatch):
    FakeMlflowClient.runs = {}
    metric = type("Metric", (), {"__init__": lambda self, key, value, timestamp, step: self.__dict__.update(
        key=key, value=value, timestamp=timestamp, step=step)})
    modules = {"mlflow": fake_module("mlflow"), "mlflow.entities": fake_module("mlflow.entities", Metric=metric),
               "mlflow.tracking": fake_module("mlflow.tracking", MlflowClient=FakeMlflowClient)}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return FakeMlflowClient.runs


def test_wandb_and_mlflow_get_the_same_curves_through_one_interface(write_suite, tmp_path, fake_wandb, fake_mlflow):
    path = write_suite(loggers=["wandb", "mlflow"], iterations=4, eval_every=2, log_every=2)
    rundir = run_suite(load_suite(path), tmp_path, methods=["source_only"])[0].spec.rundir
    rows = {r["step"]: r for r in rundir.rows()}
    (_, init), *logged, finish = fake_wandb
    assert init | {"config": None} == {"project": "udabench", "group": "tiny", "name": "Source-only seed 0",
                                       "id": rundir.id, "resume": "allow", "dir": str(rundir.path), "config": None}
    assert init["config"] == rundir.identity and finish == ("finish",)
    scalars = {(step, tag): value for _, step, values in logged for tag, value in values.items()
               if isinstance(value, float)}
    for step, row in rows.items():
        assert scalars[(step, "eval/mIoU/cityscapes19")] == row["miou"]
        assert scalars[(step, "train/loss_seg")] == pytest.approx(row["losses"]["loss_seg"])
    panels = [(step, values["eval/panel"].picture.shape) for _, step, values in logged if "eval/panel" in values]
    assert panels == [(2, (96, 256, 3)), (4, (96, 256, 3))]
    (mlflow_id, run), = fake_mlflow.items()
    assert run["tags"] == {"udabench_run": rundir.id} and run["status"] == "FINISHED"
    assert sorted((s, v) for k, s, v in run["metrics"] if k == "eval/mIoU/cityscapes19") == \
        [(s, r["miou"]) for s, r in sorted(rows.items())]
    assert ("eval/panel/step0000004.png", (96, 256, 3)) in run["artifacts"]
    # a resumed run logs into the same MLflow and W&B runs
    again = open_loggers(["mlflow", "wandb"], RunInfo(rundir.tb_dir, rundir.id, "x", "tiny", rundir.identity, 4))
    assert again.backends[0].run_id == mlflow_id and len(fake_mlflow) == 1
    assert fake_wandb[-1] == ("init", fake_wandb[0][1] | {"name": "x"})


def test_gpu_memory_is_logged_on_cuda_devices(monkeypatch):
    """Allocated and peak allocated memory in GiB, from torch.cuda's counters (faked: no GPU here)."""
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 5 * 2**29)
    means = {"losses": {"loss_seg": 1.0}, "step_time": 0.5, "data_time": 0.1, "compute_time": 0.4,
             "images_per_s": 8.0}
    logged = step_scalars(means, {}, torch.device("cuda", 0))
    assert logged["memory/gpu_gb"] == 3.0 and logged["memory/gpu_peak_gb"] == 2.5
    assert logged["train/loss_seg"] == 1.0 and logged["time/data_s"] == 0.1
    assert not any(tag.startswith("memory/") for tag in step_scalars(means, {}, torch.device("cpu")))
