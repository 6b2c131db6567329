"""The segmenter's optimizer and LR schedule settings of DAFormer/MIC (``train.optimizer: adamw``,
``train.warmup_iters``/``warmup_ratio``): against mmcv's LR hook and torch's AdamW restated, refused where they
cannot apply. That they keep the run ids at their defaults and are recorded away from them:
test_recipe_settings.py."""

import pytest
import torch

from udabench.config import load_suite
from udabench.engine.build import build_run
from udabench.errors import ConfigError
from udabench.registry import discover


def mmcv_poly_warmup_lr(base_lr, cur_iter, max_iters, power, warmup_iters, warmup_ratio, min_lr=0.0):
    """mmcv 1.x PolyLrUpdaterHook.get_lr + LrUpdaterHook.get_warmup_lr ('linear'), by_epoch=False."""
    regular = (base_lr - min_lr) * (1 - cur_iter / max_iters) ** power + min_lr
    if cur_iter >= warmup_iters:
        return regular
    k = (1 - cur_iter / warmup_iters) * (1 - warmup_ratio)
    return regular * (1 - k)


def build(write_suite, *overrides):
    suite = load_suite(write_suite(), list(overrides))
    cls = discover()["source_only"]
    return build_run(suite, cls, cls.Hparams(), torch.device("cpu"))[0]


def test_linear_warmup_then_poly_is_mmcvs_for_every_group(write_suite):
    ctx = build(write_suite, "train.iterations=20", "train.warmup_iters=5", "train.poly_power=1.0",
                "train.lr=6e-5", "train.optimizer=adamw")
    opt = ctx.slots["model"].optimizer
    for i in range(20):
        ctx.start_step(i)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(
            [mmcv_poly_warmup_lr(lr, i, 20, 1.0, 5, 1e-6) for lr in (6e-5, 6e-4)], rel=1e-12)
    assert opt.param_groups[0]["lr"] > 0


def test_without_warmup_the_schedule_is_todays_poly(write_suite):
    ctx = build(write_suite, "train.iterations=10", "train.lr=0.01")
    assert [ctx.start_step(s) for s in range(4)] == [0.01 * (1 - s / 10) ** 0.9 for s in range(4)]


def test_adamw_steps_as_torch_adamw_over_backbone_and_heads_at_ten_times(write_suite):
    ctx = build(write_suite, "train.optimizer=adamw", "train.lr=6e-5", "train.weight_decay=0.01")
    model, opt = ctx.model, ctx.slots["model"].optimizer
    assert isinstance(opt, torch.optim.AdamW)
    backbone, heads = model.param_groups()
    reference_model = {id(p): p.detach().clone().requires_grad_(True) for p in [*backbone, *heads]}
    reference = torch.optim.AdamW([{"params": [reference_model[id(p)] for p in backbone], "lr": 6e-5},
                                   {"params": [reference_model[id(p)] for p in heads], "lr": 6e-4}],
                                  betas=(0.9, 0.999), weight_decay=0.01)
    for step in range(2):
        ctx.start_step(0)   # no warm-up, step 0: the base LRs
        for p in [*backbone, *heads]:
            p.grad = torch.full_like(p, 0.1 * (step + 1))
            reference_model[id(p)].grad = p.grad.clone()
        opt.step()
        reference.step()
    assert all(torch.equal(p, reference_model[id(p)]) for p in [*backbone, *heads])


@pytest.mark.parametrize("overrides, words", [
    (["train.optimizer=adamw", "train.param_listing=deeplab_official"], "train.param_listing: unique"),
    (["train.warmup_iters=4", "train.iterations=4"], "train.warmup_iters (4) must be less than"),
])
def test_settings_that_cannot_apply_are_refused(write_suite, overrides, words):
    with pytest.raises(ConfigError) as err:
        load_suite(write_suite(), overrides)
    assert words in str(err.value)
