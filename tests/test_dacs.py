"""DACS (methods/dacs.py) and the harness's mean teacher (engine/context.py, ``EmaTeacher``), each piece against
an independent statement of the official code (vikolss/DACS, restated in ``official_loops.py``; lhoyer/MIC
``seg/mmseg/models/uda/dacs.py``) on fixed inputs, the exact resume of a run with a teacher, and that no target
label reaches the teacher or the pseudo-labels. The whole loop: test_trajectories.py."""

import copy
import random

import numpy as np
import official_loops as official
import pytest
import torch
import torch.nn.functional as F
from helpers import NoLabel, one_step

from udabench import checkpoint
from udabench.config import load_suite
from udabench.engine.rows import TIMING_FIELDS
from udabench.engine.runner import run_suite
from udabench.photometric import blur_kernel_size, gaussian_blur
from udabench.registry import discover


@pytest.fixture(scope="module")
def dacs():
    return discover()["dacs"]


@pytest.fixture(scope="module")
def mod(dacs):
    import sys

    return sys.modules[dacs.__module__]


# ---- the mean teacher -------------------------------------------------------------------------------------

def test_ema_teacher_follows_dacs_update_ema_variables_after_each_step(write_suite, dacs):
    """After step i the harness applies update_ema_variables(iteration=i), as trainUDA.py:505-511 (after
    optimizer.step()); bit for bit. The first update copies the segmenter (a = 0)."""
    ctx, method, source, target = one_step(write_suite, dacs, color_jitter=False, blur=False)
    reference = copy.deepcopy(method.teacher)
    for i in range(4):
        ctx.start_step(i)
        method.train_step(source, target, i)
        ctx.finish_step()
        official.dacs_update_ema(reference, ctx.model, 0.99, i)
        assert all(torch.equal(a, b) for a, b in zip(method.teacher.parameters(), reference.parameters())), i
        if i == 0:
            assert all(torch.equal(a, b) for a, b in zip(method.teacher.parameters(), ctx.model.parameters()))
    assert [ctx.teachers["teacher"].factor(i) for i in (0, 1, 3, 99, 500)] == [0, 0.5, 0.75, 0.99, 0.99]


def test_ema_step_offset_one_is_mics_update_at_the_start_of_the_next_iteration(write_suite, dacs):
    """MIC dacs.py:315-321: at local_iter k > 0, before the forward, _update_ema(k) with min(1 - 1/(k+1), α):
    after step i the factor of k = i + 1."""
    ctx, method, *_ = one_step(write_suite, dacs, alpha=0.999, ema_step_offset=1)
    teacher = ctx.teachers["teacher"]
    assert [teacher.factor(i) for i in (0, 1, 2, 5000)] == [0.5, 1 - 1 / 3, 0.75, 0.999]


def test_sync_teachers_copies_the_segmenter(write_suite, dacs):
    """A run that starts from another run's weights (the trainer's _start_from) re-copies its teachers."""
    ctx, method, *_ = one_step(write_suite, dacs)
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(1.0)
    ctx.sync_teachers()
    assert all(torch.equal(a, b) for a, b in zip(method.teacher.state_dict().values(),
                                                 ctx.model.state_dict().values()))


# ---- ClassMix, pixel weight, jitter and blur ------------------------------------------------------------

def test_class_mix_masks_are_the_official_choice(mod):
    gen = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 7, (3, 12, 20), generator=gen)
    labels[0, :3] = 255                       # the ignore label counts as a class, as in trainUDA.py:426-427
    labels[2] = 4                             # one class: ⌈1/2⌉ = 1, the whole image pasted
    for seed in range(5):
        np.random.seed(seed)
        expected = official.dacs_class_masks(labels)
        np.random.seed(seed)
        ours = mod.class_mix_masks(labels)
        assert torch.equal(ours, torch.cat(expected).bool())
    assert ours[2].all()


def test_threshold_uniform_weight_and_the_mixed_loss_are_the_official_ones(write_suite, dacs, mod):
    """One DACS step's mixed loss against trainUDA.py:416-486 restated (jitter and blur off: configUDA.json's
    color_jitter/blur false), from the same teacher, student and NumPy draws."""
    ctx, method, source, target = one_step(write_suite, dacs, color_jitter=False, blur=False)
    forward = method.teacher.forward   # a confident teacher: some pixels above 0.968, not all
    method.teacher.forward = lambda x: (lambda out: out._replace(main=out.main * 40))(forward(x))
    images, labels, images_remain = source["image"], source["label"], target["image"]
    np.random.seed(11)
    with torch.no_grad():
        logits_u_w = ctx.upsample(method.teacher(images_remain).main, images_remain.shape[-2:])
        max_probs, targets_u_w = torch.max(torch.softmax(logits_u_w, dim=1), dim=1)
        masks = official.dacs_class_masks(labels)
        inputs_u_s = torch.cat([official.dacs_one_mix(m, data=torch.stack((images[i], images_remain[i])))[0]
                                for i, m in enumerate(masks)])
        targets_u = torch.cat([official.dacs_one_mix(m, target=torch.stack((labels[i], targets_u_w[i])))[1]
                               for i, m in enumerate(masks)]).long()
        unlabeled_weight = torch.sum(max_probs.ge(0.968).long() == 1).item() / np.size(targets_u.cpu().numpy())
        pixel = unlabeled_weight * torch.ones(max_probs.shape)
        pixel = torch.cat([official.dacs_one_mix(m, target=torch.stack((torch.ones_like(pixel[i]), pixel[i])))[1]
                           for i, m in enumerate(masks)])
        ce = F.cross_entropy(ctx.upsample(ctx.model(inputs_u_s).main, images.shape[-2:]), targets_u,
                             ignore_index=255, reduction="none")
        expected = torch.mean(ce * pixel).item()
    assert 0 < unlabeled_weight < 1
    np.random.seed(11)
    ctx.start_step(0)
    logs = method.train_step(source, target, 0)
    assert logs["loss_mix"] == pytest.approx(expected, rel=1e-5)
    assert logs["pseudo_weight"] == pytest.approx(unlabeled_weight)
    confident = torch.tensor([[0.97, 0.5], [0.968, 0.1]])
    assert torch.equal(mod.pixel_weight(confident, "threshold_uniform", 0.968), torch.full((2, 2), 0.5))
    assert torch.equal(mod.pixel_weight(confident, "threshold", 0.968), torch.tensor([[1.0, 0], [1, 0]]))


def test_blur_is_korniass_gaussian_blur_with_the_official_kernel_size():
    for side in (1, 9, 10, 11, 20, 21, 32, 512, 1024, 719):
        assert blur_kernel_size(side) == int(np.floor(np.ceil(0.1 * side) - 0.5 + np.ceil(0.1 * side) % 2))
    image = torch.rand(1, 3, 40, 72) * 255
    for sigma in (0.15, 0.6, 1.15):
        expected = official.kornia_gaussian_blur(image, (blur_kernel_size(40), blur_kernel_size(72)), sigma)
        assert torch.allclose(gaussian_blur(image, sigma), expected, rtol=1e-5, atol=1e-3)


def test_defaults_are_the_official_values(dacs):
    hp = dacs.Hparams()
    assert (hp.lambda_mix, hp.alpha, hp.ema_step_offset, hp.pixel_weight, hp.pseudo_threshold) == \
        (1.0, 0.99, 0, "threshold_uniform", 0.968)   # configUDA.json, trainUDA.py:467, 510
    assert (hp.color_jitter, hp.jitter_strength, hp.jitter_skip, hp.blur) == (True, 0.25, 0.2, True)


def test_jitter_and_blur_draws_are_made_once_per_step_as_the_official_loop(write_suite, dacs, monkeypatch, mod):
    """trainUDA.py:445-452: two random.uniform draws per step decide jitter (> 0.2) and blur (> 0.5) for every
    image; σ is drawn per image (np.random.uniform(0.15, 1.15))."""
    ctx, method, source, target = one_step(write_suite, dacs)
    calls = {"jitter": [], "blur": []}
    jitter, blur = mod.color_jitter, mod.gaussian_blur
    monkeypatch.setattr(mod, "color_jitter", lambda x, s: calls["jitter"].append(s) or jitter(x, s))
    monkeypatch.setattr(mod, "gaussian_blur", lambda x, sigma: calls["blur"].append(sigma) or blur(x, sigma))
    for draws, jittered, blurred in (((0.21, 0.51), 2, 2), ((0.2, 0.5), 0, 0), ((0.9, 0.1), 2, 0)):
        values = iter(draws)
        monkeypatch.setattr(random, "uniform", lambda a, b: next(values))
        calls["jitter"].clear(), calls["blur"].clear()
        ctx.start_step(0)
        method.train_step(source, target, 0)
        assert (len(calls["jitter"]), len(calls["blur"])) == (jittered, blurred)
        assert all(s == 0.25 for s in calls["jitter"]) and all(0.15 <= s <= 1.15 for s in calls["blur"])


# ---- no target label reaches the teacher ------------------------------------------------------------------

def test_the_teacher_and_pseudo_labels_never_read_target_labels(write_suite, dacs, monkeypatch):
    ctx, method, source, target = one_step(write_suite, dacs)
    seen = []
    forward = method.teacher.forward
    monkeypatch.setattr(method.teacher, "forward", lambda x, *a, **k: seen.append(x) or forward(x, *a, **k))
    guarded = NoLabel(target, label=torch.full_like(source["label"], 3))
    ctx.start_step(0)
    method.train_step(source, guarded, 0)
    assert len(seen) == 1 and seen[0] is target["image"]   # the target images, nothing else
    assert all(p.grad is None for p in method.teacher.parameters())   # and no gradient reaches it
    assert not dacs.uses_target_labels                     # so the trainer removes them before train_step


# ---- the run: teacher checkpointed, exact resume ----------------------------------------------------------

def crash_at(monkeypatch, cls, step):
    original = cls.train_step

    def train_step(self, source, target, s):
        if s == step:
            raise KeyboardInterrupt
        return original(self, source, target, s)

    monkeypatch.setattr(cls, "train_step", train_step)


@pytest.mark.slow
@pytest.mark.parametrize("name, teacher, frozen", [("dacs", "teacher", set()), ("daformer_mic", "teacher", {"imagenet"}),
                                                   ("minent_mic", "mic_teacher", set())])
def test_a_killed_run_with_a_teacher_resumes_to_identical_weights_teacher_and_rows(write_suite, name, teacher, frozen,
                                                                                  tmp_path, monkeypatch):
    cls = discover()[name]

    def edit(suite):
        suite["methods"].update({name: {}})
        if name == "daformer_mic":   # with the MIC recipe's sampling: rare classes, their crops re-drawn
            suite["train"].update(source_sampler="rare_class", rcs_min_pixels=40)
            suite["augment"] = {"source": {"crop": [48, 24], "cat_max_ratio": 0.75}, "target": {"crop": [48, 24]}}
    path = write_suite(edit, iterations=5, checkpoint_every=2, eval_every=2)
    straight = run_suite(load_suite(path), tmp_path / "a", methods=[name])[0]
    crash_at(monkeypatch, cls, 3)   # killed during step 3: resumes from the step-2 checkpoint
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite(path), tmp_path / "b", methods=[name])
    monkeypatch.undo()
    resumed = run_suite(load_suite(path), tmp_path / "b", methods=[name])[0]
    a, b = (checkpoint.load(o.spec.rundir.checkpoint)["slots"] for o in (straight, resumed))
    assert set(a) == {"model", teacher, *frozen} and all(a[s]["optimizer"] is None for s in {teacher, *frozen})
    for slot in a:
        assert all(torch.equal(a[slot]["module"][k], b[slot]["module"][k]) for k in a[slot]["module"]), slot
    assert not all(torch.equal(a[teacher]["module"][k], a["model"]["module"][k]) for k in a["model"]["module"])
    # measured, not computed: flops_per_step is counted on an attempt's first step, whose blur draw varies
    volatile = ("time", "flops_per_step", *TIMING_FIELDS)
    rows = [[{k: v for k, v in r.items() if k not in volatile} for r in o.spec.rundir.rows()]
            for o in (straight, resumed)]
    assert rows[0] == rows[1] and [r["step"] for r in rows[0]] == [2, 4, 5]


def test_domains_of_different_training_sizes_are_refused_when_runs_are_planned(write_suite, tmp_path, capsys):
    from udabench.cli import main

    path = str(write_suite(lambda s: s["methods"].update(dacs={}) or s["data"]["target"].update(size=[48, 32])))
    assert main(["run", path, "--dry-run", "--results", str(tmp_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "source 64x32, target 48x32" in err and "data.target.size" in err


@pytest.mark.slow
def test_a_teacher_starts_from_the_weights_its_run_starts_from(write_suite, dacs, tmp_path, monkeypatch):
    """stages.dacs.start_from: the segmenter is loaded after setup; the teacher of step 0 is a copy of it."""
    path = write_suite(lambda s: s["methods"].update(dacs={}) or s.update(stages={"dacs": {"start_from":
                                                                                         "source_only"}}),
                       iterations=2, checkpoint_every=2, eval_every=2)
    seen = []
    original = dacs.train_step

    def train_step(self, source, target, step):
        if step == 0:
            seen.append(all(torch.equal(a, b) for a, b in zip(self.teacher.state_dict().values(),
                                                             self.ctx.model.state_dict().values())))
            seen.append(next(self.ctx.model.parameters()).detach().clone())
        return original(self, source, target, step)

    monkeypatch.setattr(dacs, "train_step", train_step)
    source_only, _ = run_suite(load_suite(path), tmp_path, methods=["source_only", "dacs"])
    trained = checkpoint.segmenter_state(checkpoint.load(source_only.spec.rundir.checkpoint))
    assert seen[0] and torch.equal(seen[1], next(iter(trained.values())))
