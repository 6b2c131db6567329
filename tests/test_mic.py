"""MIC (methods/mic.py), DAFormer's strategies (methods/daformer.py) and AdvSeg (methods/advseg.py), each piece
against an independent statement of lhoyer/MIC (``official_loops.py``) on fixed inputs; what reaches the teachers
and the frozen ImageNet copy. The plugin contract and exact resume of every new method: test_methods.py."""

import random
import sys
from types import SimpleNamespace

import numpy as np
import official_loops as official
import pytest
import torch
import torch.nn.functional as F
from helpers import NoLabel, one_step

from udabench.losses import self_information
from udabench.models.input_norm import InputNorm
from udabench.registry import discover


@pytest.fixture(scope="module")
def methods():
    return discover()


def module_of(cls):
    return sys.modules[cls.__module__]


def confident(teacher):
    """A teacher sharp enough that some pixels pass 0.968 and some do not."""
    forward = teacher.forward
    teacher.forward = lambda x: (lambda out: out._replace(main=out.main * 40))(forward(x))


# ---- MIC: the block mask ------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["imagenet", "caffe_bgr"])
@pytest.mark.parametrize("size, block", [((64, 96), 32), ((40, 72), 16), ((32, 64), 8)])
def test_block_mask_and_masked_image_are_mics(methods, norm, size, block):
    mod = module_of(methods["dacs_mic"])
    image = torch.rand(2, 3, *size) * 255
    model = SimpleNamespace(input_norm=InputNorm(norm))
    torch.manual_seed(4)
    expected, expected_mask = official.mic_mask_image(model.input_norm(image), 0.7, block)
    torch.manual_seed(4)
    mask = mod.block_mask(2, size, block, 0.7)
    assert torch.equal(mask, expected_mask)
    assert torch.equal(model.input_norm(mod.mask_image(image, mask, mod.normalised_zero(model))), expected)


def test_block_mask_layout_and_ratio(methods):
    mod = module_of(methods["dacs_mic"])
    torch.manual_seed(0)
    mask = mod.block_mask(4, (256, 512), 32, 0.7)
    cells = mask[:, 0, ::32, ::32]
    assert torch.equal(mask[:, 0], cells.repeat_interleave(32, 1).repeat_interleave(32, 2))   # whole b×b blocks
    assert set(mask.unique().tolist()) == {0.0, 1.0} and 0.2 < mask.mean() < 0.4   # ~30 % of the blocks kept
    assert mod.block_mask(1, (40, 72), 32, 0.7).shape == (1, 1, 40, 72)           # grid round(H/b)×round(W/b)


def test_a_block_larger_than_twice_a_side_is_refused_before_training(write_suite, tmp_path, capsys):
    from udabench.cli import main

    path = str(write_suite(lambda s: s["methods"].update(dacs_mic={"mic_block_size": 64})))   # 64×32 images
    assert main(["run", path, "--dry-run", "--results", str(tmp_path)]) == 2   # round(32 / 64) = 0 rows of blocks
    err = " ".join(capsys.readouterr().err.split())
    assert "mic_block_size = 64" in err and "64x32" in err
    path = str(write_suite(lambda s: s["methods"].update(dacs_mic={"mic_block_size": 63})))
    assert main(["run", path, "--dry-run", "--results", str(tmp_path)]) == 0


# ---- MIC: the loss, its weight and its teacher ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["minent_mic", "dacs_mic", "daformer_mic"])
def test_masked_loss_is_mics_weighted_ce_of_the_teachers_labels(write_suite, methods, name):
    """One step's MIC term against masking_consistency_module.py:70-143 restated: the teacher's labels and
    confidence weight on the unmasked target, the masked (normalised) image, mmseg's weighted CE (no aug:
    ``separatetrg``, the augmentation draws are the next test's)."""
    extra = {"psweight_ignore_top": 3, "psweight_ignore_bottom": 5} if name == "daformer_mic" else {}
    hp = {"mic_mask_mode": "separatetrg", "color_jitter": False, "blur": False} if name != "minent_mic" else \
        {"mic_mask_mode": "separatetrg"}
    ctx, method, source, target = one_step(write_suite, methods[name], mic_block_size=8, **hp, **extra)
    teacher = method.teacher if name != "minent_mic" else method.mic_teacher
    confident(teacher)
    x_t = target["image"]
    with torch.no_grad():
        logits = ctx.upsample(teacher(x_t).main, x_t.shape[-2:])
    label, weight = official.mic_pseudo_label_and_weight(logits, 0.968, extra.get("psweight_ignore_top", 0),
                                                         extra.get("psweight_ignore_bottom", 0))
    assert 0 < weight.max() < 1
    inputs = []
    hook = ctx.model.register_forward_hook(lambda m, args, out: inputs.append(args[0]))
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    ctx.start_step(0)
    logs = method.train_step(source, target, 0)
    hook.remove()
    masked = inputs[-1]
    torch.manual_seed(1)   # the block mask is the step's only torch draw (no jitter, no dropout)
    expected_input, mask = official.mic_mask_image(ctx.model.input_norm(x_t), 0.7, 8)
    assert torch.equal(ctx.model.input_norm(masked) * mask, expected_input)   # x_T where kept
    assert torch.equal(ctx.model.input_norm(masked)[mask.expand_as(masked) == 0].abs().max(), torch.tensor(0.0))
    with torch.no_grad():
        student = ctx.upsample(ctx.model(masked).main, x_t.shape[-2:])
    assert logs["loss_mic"] == pytest.approx(official.mmseg_weighted_ce(student, label, weight).item(), rel=1e-5)
    assert all(p.grad is None for p in teacher.parameters())


def test_the_augmentation_draws_are_mics(write_suite, methods, monkeypatch):
    """masking_consistency_module.py:118-130: one draw for jitter (> 0.2), one for blur (> 0.5), per step; jitter
    per image at strength 0.2, one σ for the batch."""
    ctx, method, source, target = one_step(write_suite, methods["minent_mic"])
    mod = module_of(methods["minent_mic"])
    calls = {"jitter": [], "blur": []}
    jitter, blur = mod.color_jitter, mod.gaussian_blur
    monkeypatch.setattr(mod, "color_jitter", lambda x, s: calls["jitter"].append(s) or jitter(x, s))
    monkeypatch.setattr(mod, "gaussian_blur", lambda x, sigma: calls["blur"].append(len(x)) or blur(x, sigma))
    for draws, jittered, blurred in (((0.21, 0.51), [0.2, 0.2], [2]), ((0.2, 0.5), [], []), ((0.9, 0.1), [0.2] * 2,
                                                                                              [])):
        values = iter(draws)
        monkeypatch.setattr(random, "uniform", lambda a, b: next(values))
        calls["jitter"].clear(), calls["blur"].clear()
        method.augment(target["image"])
        assert (calls["jitter"], calls["blur"]) == (jittered, blurred)


@pytest.mark.parametrize("name, teachers", [("minent_mic", {"mic_teacher"}), ("advseg_mic", {"mic_teacher"}),
                                            ("dacs_mic", {"teacher"}), ("daformer_mic", {"teacher"})])
def test_one_teacher_sees_the_target_images_only_and_gets_no_gradient(write_suite, methods, name, teachers):
    """A host with a teacher shares it (one teacher forward a step, MIC's mask_alpha 'same'); any other host gets
    one of its own, α 0.999, offset 1."""
    ctx, method, source, target = one_step(write_suite, methods[name])
    assert set(ctx.teachers) == teachers
    (slot,) = teachers
    seen = []
    teacher = ctx.teachers[slot].module
    forward = teacher.forward
    teacher.forward = lambda x: seen.append(x) or forward(x)
    ctx.start_step(0)
    method.train_step(source, NoLabel(target, label=torch.full_like(source["label"], 3)), 0)
    assert len(seen) == 1 and seen[0] is target["image"]
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    if slot == "mic_teacher":
        assert (ctx.teachers[slot].alpha, ctx.teachers[slot].step_offset) == (0.999, 1)


# ---- DAFormer: feature distance and the pseudo-label crop -----------------------------------------------------

def test_label_downscaling_and_masked_feature_distance_are_daformers(methods):
    mod = module_of(methods["daformer"])
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 19, (2, 32, 64), generator=gen)
    label[:, :16, :32] = 13                         # whole cells of one thing class: kept
    label[:, 16:, 32:] = 255                        # ignore cells
    label[0, :8, 32:40] = torch.tensor([6, 2]).repeat(32)[:64].view(8, 8)   # a 50/50 cell: under the ratio
    for scale in (4, 8):
        expected = official.downscale_label_ratio(label[:, None], scale, 0.75, 19)[:, 0]
        assert torch.equal(mod.downscale_label(label, scale, 0.75, 19), expected)
    student, imagenet = torch.randn(2, 16, 4, 8, generator=gen), torch.randn(2, 16, 4, 8, generator=gen)
    cells = mod.downscale_label(label, 8, 0.75, 19)
    things = torch.tensor(mod.THING_CLASSES_19)
    ours = 0.005 * mod.masked_feature_distance(student, imagenet, torch.isin(cells, things))
    expected = official.daformer_feat_dist(student, imagenet, label[:, None], list(mod.THING_CLASSES_19), 0.75, 19,
                                            0.005)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-6)
    none = torch.zeros_like(cells, dtype=torch.bool)
    assert mod.masked_feature_distance(student.requires_grad_(), imagenet, none).item() == 0   # official: NaN


def test_daformer_step_adds_the_feature_distance_to_a_frozen_copy_of_the_initial_model(write_suite, methods):
    ctx, method, source, target = one_step(write_suite, methods["daformer"], color_jitter=False)
    source["label"][:, :16, :16] = 13            # car: thing cells on the 4×8 feature grid
    initial = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    with torch.no_grad():
        out = ctx.model(source["image"])
        reference = method.imagenet(source["image"]).features
    expected = official.daformer_feat_dist(out.features, reference, source["label"][:, None],
                                           [6, 7, 11, 12, 13, 14, 15, 16, 17, 18], 0.75, 19, 1.0)
    for step in range(2):
        ctx.start_step(step)
        logs = method.train_step(source, target, step)
        ctx.finish_step()
        if step == 0:
            assert logs["loss_fd"] == pytest.approx(expected.item(), rel=1e-5) and expected > 0
    slot = ctx.slots["imagenet"]
    assert slot.optimizer is None and not method.imagenet.training
    assert all(p.grad is None and not p.requires_grad for p in method.imagenet.parameters())
    assert all(torch.equal(v, initial[k]) for k, v in method.imagenet.state_dict().items())
    assert not all(torch.equal(v, initial[k]) for k, v in ctx.model.state_dict().items())
    assert "imagenet" not in ctx.teachers


def test_daformer_defaults_are_the_official_values(methods):
    hp = methods["daformer"].Hparams()
    assert (hp.alpha, hp.ema_step_offset, hp.jitter_strength, hp.pseudo_threshold) == (0.999, 1, 0.2, 0.968)
    assert (hp.lambda_fd, tuple(hp.fd_classes), hp.fd_scale_min_ratio) == (0.005, (6, 7, 11, 12, 13, 14, 15, 16,
                                                                                  17, 18), 0.75)
    mic = methods["daformer_mic"].Hparams()
    assert (mic.mic_block_size, mic.mic_ratio, mic.lambda_mic, mic.mic_mask_mode) == (32, 0.7, 1.0,
                                                                                      "separatetrgaug")


# ---- AdvSeg: what D sees ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["advseg", "advent"])
def test_discriminators_see_softmax_maps_for_advseg_and_self_information_for_advent(write_suite, methods, name):
    ctx, method, source, target = one_step(write_suite, methods[name])
    seen = []
    d = method.discriminators["main"]
    d.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    ctx.start_step(0)
    method.train_step(source, target, 0)
    with torch.no_grad():
        prob = ctx.upsample(ctx.model(target["image"]).main, target["image"].shape[-2:]).softmax(1)
    expected = prob if name == "advseg" else self_information(prob)
    assert torch.allclose(seen[0], expected, atol=1e-6)   # the generator step's target map


def test_advseg_least_squares_gan_is_mics(write_suite, methods):
    ctx, method, *_ = one_step(write_suite, methods["advseg"], gan="ls")
    d_out = torch.randn(2, 1, 3, 5)
    assert torch.equal(method.d_loss(d_out, 1.0), torch.nn.MSELoss()(d_out, torch.ones_like(d_out)))
    vanilla = one_step(write_suite, methods["advseg"])[1]
    assert torch.equal(vanilla.d_loss(d_out, 0.0), F.binary_cross_entropy_with_logits(d_out, torch.zeros_like(d_out)))
