"""What a run directory survives: exact resume for RNG-drawing plugins (rows, weights and TensorBoard curves),
damaged files, code-carrying pickles, restarts from step 0 and a full disk."""

import errno
import json
import random
import shutil

import numpy as np
import pytest
import torch
import yaml
from helpers import curves, events, texts, tiny_suite_dict

from udabench import Method, checkpoint
from udabench.cli import main
from udabench.config import load_suite
from udabench.engine.plan import make_plan
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.runner import run_suite
from udabench.registry import METHODS, discover, register

VOLATILE = ("time", *TIMING_FIELDS)


class Noisy(Method):
    """Draws from torch, NumPy and Python generators every step (flip, dropout, loss weight), like
    augmentation and dropout in a paper recipe would; crashes at ``crash_at`` (a kill)."""

    name = "test_noisy"
    paper = "test"
    description = "random flips, dropout and weights"
    crash_at: int | None = None

    def train_step(self, source, target, step):
        if step == Noisy.crash_at:
            raise KeyboardInterrupt
        image = source["image"].flip(-1) if torch.rand(()) < 0.5 else source["image"]
        label = source["label"].flip(-1) if image is not source["image"] else source["label"]
        with self.ctx.autocast():
            out = self.ctx.model(torch.nn.functional.dropout(image, 0.2))
            loss, logs = self.ctx.supervised_loss(out, label)
            weight = float(np.random.uniform(0.5, 1.5)) * random.uniform(0.5, 1.5)
            target_energy = self.ctx.model(target["image"]).main.float().softmax(1).pow(2).mean()
            loss = loss - 0.1 * weight * target_energy
        self.ctx.backward(loss)
        return {**logs, "weight": weight}


@pytest.fixture
def noisy():
    register(Noisy)
    yield Noisy
    Noisy.crash_at = None
    METHODS.pop(Noisy.name, None)


def rows(rundir):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rundir.rows()]


KILLED_SUITE = {"iterations": 6, "eval_every": 3, "checkpoint_every": 2, "log_every": 1}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_data):
    """The RNG-drawing plugin's run without interruption (shared by the kill tests)."""
    register(Noisy)
    path = write_yaml(tmp_path_factory.mktemp("suite"), tiny_suite_dict(tiny_data, **KILLED_SUITE))
    rundir = run_suite(load_suite(path), tmp_path_factory.mktemp("straight"), methods=[Noisy.name])[0].spec.rundir
    return path, rundir


@pytest.fixture(scope="module", params=random.Random(11).sample(range(1, 6), 2))
def killed_and_resumed(request, uninterrupted, tmp_path_factory):
    """The same run killed at step ``param`` (a KeyboardInterrupt inside the plugin), then resumed: the
    killed attempt's TensorBoard folder is copied aside before the resume."""
    path, _ = uninterrupted
    results, kill_at = tmp_path_factory.mktemp("killed"), request.param
    register(Noisy)
    Noisy.crash_at = kill_at
    try:
        with pytest.raises(KeyboardInterrupt):
            run_suite(load_suite(path), results, methods=[Noisy.name])
    finally:
        Noisy.crash_at = None
    killed = make_plan(load_suite(path), results, [Noisy.name]).requested[0].rundir
    killed_tb = shutil.copytree(killed.tb_dir, tmp_path_factory.mktemp("killed_tb") / "tb") \
        if killed.tb_dir.exists() else None
    resumed = run_suite(load_suite(path), results, methods=[Noisy.name])[0].spec.rundir
    return kill_at, killed_tb, resumed


def test_a_killed_rng_drawing_run_resumes_bit_exactly(noisy, uninterrupted, killed_and_resumed):
    _, straight = uninterrupted
    _, _, resumed = killed_and_resumed
    assert rows(resumed) == rows(straight)          # losses of every row (running averages) and every score
    assert [r["step"] for r in rows(resumed)] == [3, 6]
    final = [checkpoint.segmenter_state(checkpoint.load(r.checkpoint)) for r in (straight, resumed)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def test_a_killed_run_continues_its_tensorboard_curves(noisy, uninterrupted, killed_and_resumed):
    """Read back with TensorBoard's reader: each step once, none back-dated (the killed attempt's points after
    its last checkpoint, step 4, are purged), with the uninterrupted run's values (timings aside)."""
    pytest.importorskip("tensorboard")
    _, straight = uninterrupted
    kill_at, killed_tb, resumed = killed_and_resumed
    assert [s for s, _ in curves(events(killed_tb.parent))["train/weight"]] == list(range(1, kill_at + 1))
    got, want = curves(events(resumed.path)), curves(events(straight.path))
    assert set(got) == set(want) and {"train/weight", "lr/model", "eval/mIoU/cityscapes19"} <= set(got)
    for tag, points in got.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps))
        if tag.startswith("time/"):     # the first step of each attempt is not timed (rows.TIMING_FIELDS)
            assert set(steps) <= {s for s, _ in want[tag]} and 6 in steps
        else:
            assert points == want[tag]
    assert [s for s, _ in got["train/weight"]] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events(resumed.path).Images("eval/panel")] == [3, 6]
    assert texts(events(resumed.path), "stage") == [(1, "steps 1-6: test_noisy"), (5, "steps 5-6: test_noisy")]
    assert len(list(resumed.tb_dir.glob("events.out.tfevents.*"))) == 2     # one event file per attempt


# Every augmentation on both domains: draws that a resumed run must repeat exactly.
AUGMENT = {"source": {"jitter": {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.2},
                      "scale": [0.8, 1.2], "crop": [48, 24], "flip": 0.5, "blur": 0.5},
           "target": {"scale": [0.9, 1.1], "crop": [56, 28], "flip": 0.5, "blur": 0.5}}


def staged_suite(tiny_data, workers: int = 0) -> dict:
    """A two-stage recipe: Source-only for 5 steps, then the RNG-drawing plugin from its final weights (6 steps,
    LR restarted at 0.005), both with augmentation."""
    suite = tiny_suite_dict(tiny_data, **KILLED_SUITE)
    suite["methods"], suite["oracle"], suite["augment"] = {"source_only": {}, Noisy.name: {}}, False, AUGMENT
    suite["data"]["num_workers"] = workers
    suite["stages"] = {"source_only": {"train": {"iterations": 5}},
                       Noisy.name: {"start_from": "source_only", "train": {"lr": 0.005}}}
    return suite


@pytest.fixture(scope="module")
def staged(tmp_path_factory, tiny_data):
    register(Noisy)
    path = write_yaml(tmp_path_factory.mktemp("staged"), staged_suite(tiny_data))
    outcomes = run_suite(load_suite(path), tmp_path_factory.mktemp("straight"), methods=[Noisy.name])
    return [o.spec.rundir for o in outcomes]


def same_run(a, b) -> bool:
    """Same rows (run ids aside: num_workers is part of a run's identity) and the same final weights."""
    strip = lambda r: [{k: v for k, v in row.items() if k not in ("run_id", "protocol")} for row in rows(r)]
    final = [checkpoint.segmenter_state(checkpoint.load(r.checkpoint)) for r in (a, b)]
    return strip(a) == strip(b) and all(torch.equal(final[0][k], final[1][k]) for k in final[0])


@pytest.mark.parametrize("stage, kill_at, workers", [("source", 3, 0), ("adaptation", 3, 2)])
def test_a_run_killed_inside_either_stage_resumes_bit_exactly_with_augmentation(noisy, staged, tiny_data, tmp_path,
                                                                                 monkeypatch, stage, kill_at, workers):
    path = write_yaml(tmp_path, staged_suite(tiny_data, workers))
    source_only = discover()["source_only"]
    real = source_only.train_step

    def killed_at(self, source, target, step):
        if step == kill_at:
            raise KeyboardInterrupt
        return real(self, source, target, step)

    if stage == "source":
        monkeypatch.setattr(source_only, "train_step", killed_at)
    else:
        noisy.crash_at = kill_at
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite(path), tmp_path / "r", methods=[noisy.name])
    monkeypatch.undo()
    noisy.crash_at = None
    resumed = [o.spec.rundir for o in run_suite(load_suite(path), tmp_path / "r", methods=[noisy.name])]
    assert [r.status for r in resumed] == ["done", "done"]
    assert all(same_run(a, b) for a, b in zip(staged, resumed))
    assert [r["step"] for r in rows(resumed[0])] == [3, 5] and [r["step"] for r in rows(resumed[1])] == [3, 6]


def write_yaml(folder, suite: dict):
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_a_restart_from_step_0_discards_the_earlier_attempts_rows(write_suite, tmp_path):
    path = write_suite(iterations=4, eval_every=2, checkpoint_every=4)
    rundir = run_suite(load_suite(path), tmp_path, methods=["source_only"])[0].spec.rundir
    first = rows(rundir)
    (rundir.done_marker).unlink()
    rundir.checkpoint.unlink()                  # as the corrupt-checkpoint message tells the user to do
    rundir.failed_marker.write_text("an earlier failure\n")
    with rundir.metrics.open("a") as f:
        f.write(json.dumps({**rundir.rows()[0], "step": 99, "miou": -1.0}) + "\n")   # a stray row
    again = run_suite(load_suite(path), tmp_path, methods=["source_only"])[0]
    assert again.status == "trained" and rows(again.spec.rundir) == first
    assert not rundir.failed_marker.exists() and rundir.done_marker.exists()


def test_a_torn_metrics_line_is_skipped_with_a_warning_and_the_run_resumes(write_suite, tmp_path, caplog):
    path = write_suite(iterations=4, eval_every=2, checkpoint_every=2)
    rundir = run_suite(load_suite(path), tmp_path, methods=["source_only"])[0].spec.rundir
    expected = rows(rundir)
    rundir.done_marker.unlink()
    text = rundir.metrics.read_text().splitlines()
    rundir.metrics.write_text(text[0] + "\n" + text[1][: len(text[1]) // 2])    # killed mid-write
    state = checkpoint.load(rundir.checkpoint)
    checkpoint.save(rundir.checkpoint, **{**state, "step": 2})                  # ... right after step 2
    del state
    with caplog.at_level("WARNING", logger="udabench"):
        run_suite(load_suite(path), tmp_path, methods=["source_only"])
    assert f"{rundir.metrics}:2" in caplog.text and "skipped" in caplog.text
    assert [r["step"] for r in rows(rundir)] == [2, 4] and rows(rundir)[0] == expected[0]


class Payload:
    """Unpickling this runs ``mark()`` — what a crafted checkpoint in a shared results folder could do."""

    def __reduce__(self):
        return (_mark, ())


RAN = []


def _mark():
    RAN.append(True)
    return {}


def plant(path):
    torch.save({"step": 2, "slots": Payload()}, path)   # a real torch file, with the payload in its pickle


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_data):
    """A results folder with a finished Source-only run and its shared warm-up snapshot."""
    suite = tiny_suite_dict(tiny_data, source_warmup=2)
    suite["methods"], suite["oracle"] = {"source_only": {}, "minent": {}}, False
    suite["ensembles"] = {"pair": ["source_only", "minent"]}
    path = write_yaml(tmp_path_factory.mktemp("suite"), suite)
    results = tmp_path_factory.mktemp("finished")
    assert main(["run", str(path), "--results", str(results), "--methods", "source_only"]) == 0
    return str(path), results


@pytest.mark.parametrize("route", ["resume", "warmup", "ensemble", "viz"])
def test_no_file_udabench_loads_can_run_code(route, finished, tmp_path, capsys):
    path, original = finished
    results = tmp_path / "r"
    shutil.copytree(original, results)
    run = next((results / "tiny" / "source_only").glob("seed0-*"))
    capsys.readouterr()
    RAN.clear()
    if route == "resume":
        (run / "done").unlink()
        plant(run / "checkpoints" / "last.pt")
        argv = ["run", path, "--results", str(results)]
    elif route == "warmup":
        plant(next((results / "tiny" / "_warmup").glob("seed0-*")) / "checkpoints" / "last.pt")
        argv = ["run", path, "--results", str(results), "--methods", "minent"]
    elif route == "ensemble":   # minent finishes now; the ensemble then loads source_only's final model
        plant(run / "checkpoints" / "last.pt")
        argv = ["run", path, "--results", str(results), "--methods", "minent"]
    else:
        plant(run / "checkpoints" / "last.pt")
        argv = ["viz", str(run), "--device", "cpu"]
    code = main(argv)
    err = "".join(capsys.readouterr())   # a run's FAILED line is on stdout (its run failed, the suite went on)
    assert not RAN, "a pickled payload was executed"
    assert "Traceback" not in err and "would run code" in err
    assert ("_warmup" if route == "warmup" else "last.pt") in err
    assert code == (0 if route == "ensemble" else 2)   # an ensemble with a damaged member is skipped, the rest goes on


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_suite_goes_on(write_suite, tmp_path, monkeypatch, capsys):
    path = str(write_suite(iterations=4, eval_every=4, checkpoint_every=2))
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kw):
        calls.append(str(f))
        if len(calls) == 2:         # the second checkpoint of the first run: the disk is full
            with open(f, "wb") as out:
                out.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kw)

    monkeypatch.setattr(torch, "save", save)
    code = main(["run", path, "--results", str(tmp_path / "r"), "--methods", "source_only,oracle"])
    err = capsys.readouterr().err
    run = next((tmp_path / "r" / "tiny" / "source_only").glob("seed0-*"))
    assert code == 2 and "source_only seed 0" in err                  # a full disk is bad input: exit 2, named
    assert "no space left on device" in (run / "failed").read_text()
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 2   # the previous checkpoint is intact
    assert not list(run.rglob("*.tmp.*"))                                  # no partial file left behind
    assert (next((tmp_path / "r" / "tiny" / "oracle").glob("seed0-*")) / "done").exists()
