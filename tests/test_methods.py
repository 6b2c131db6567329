"""Every registered method honours the plugin contract; adversarial methods keep their updates apart."""

import pytest
import torch
from helpers import BUILTIN
from torch.utils.data import default_collate

from udabench import checkpoint
from udabench.config import load_suite
from udabench.engine.build import build_run
from udabench.engine.rundata import build_data
from udabench.engine.runner import run_suite
from udabench.models import build_model
from udabench.registry import discover

OPTIONS = {  # every documented option runs too
    "minent": {"entropy_ranking": True, "class_prior": True},
    "advent": {"class_prior": True},
    "maxsquare_iw": {"self_guided": True, "weight_by": "pixel_argmax"},
    "fada": {"temperature_on_source_ce": True, "loss_resolution": "input"},
    "dacs": {"pixel_weight": "threshold", "ema_step_offset": 1, "alpha": 0.999, "color_jitter": False},
    "advseg": {"gan": "ls"},
    "daformer": {"psweight_ignore_top": 2, "psweight_ignore_bottom": 3, "lambda_fd": 0.0},
    "minent_mic": {"mic_mask_mode": "separatetrg", "mic_blur": False},
}
FROZEN = {"teacher", "mic_teacher", "imagenet"}   # slots without an optimizer (mean teachers, DAFormer's copy)
TEACHER = {"self_distill": {"teacher": "source_only"}}   # stages that the methods learning from a teacher need


def record_steps(monkeypatch, cls, crash_at=None):
    calls = []
    original = cls.train_step

    def train_step(self, source, target, step):
        if step == crash_at:
            raise KeyboardInterrupt
        logs = original(self, source, target, step)
        calls.append((step, logs))
        return logs

    monkeypatch.setattr(cls, "train_step", train_step)
    return calls


def test_builtin_methods_are_registered():
    assert {"source_only", "oracle", "minent", "advent", "maxsquare", "maxsquare_iw", "fada", "target_bn",
            "self_distill", "advseg", "daformer", "dacs_mic", "daformer_mic", "minent_mic", "advseg_mic"} <= set(BUILTIN) <= set(discover())


# MIC on hosts other than DACS (the same plug-in; tests/test_mic.py steps each host) and the options of the DACS and
# AdvEnt subclasses (tests/test_mic.py covers them) run with -m slow: the default pytest stays under 5 minutes
SLOW_CONTRACT = {("advseg_mic", False), ("daformer_mic", False), ("minent_mic", False), ("minent_mic", True),
                 ("advseg", True), ("daformer", True)}
CONTRACT = [pytest.param(name, options, id=f"{'options' if options else 'defaults'}-{name}",
                         marks=[pytest.mark.slow] if (name, options) in SLOW_CONTRACT else [])
            for options in (False, True) for name in BUILTIN]


@pytest.mark.parametrize("name, options", CONTRACT)
def test_build_train_checkpoint_resume(name, options, write_suite, tmp_path, monkeypatch):
    if options and name not in OPTIONS:
        pytest.skip("no options")
    cls = discover()[name]
    path = write_suite(lambda s: s["methods"].update({name: OPTIONS[name] if options else {}}) or
                       s.update(stages={name: TEACHER[name]} if name in TEACHER else {}),
                       iterations=4, checkpoint_every=3, eval_every=4)
    straight = record_steps(monkeypatch, cls)
    outcome = run_suite(load_suite(path), tmp_path / "a", methods=[name])[0]
    assert outcome.status == "trained" and [s for s, _ in straight] == [0, 1, 2, 3]

    monkeypatch.undo()
    resumed = record_steps(monkeypatch, cls, crash_at=3)
    with pytest.raises(KeyboardInterrupt):
        run_suite(load_suite(path), tmp_path / "b", methods=[name])
    monkeypatch.undo()
    after = record_steps(monkeypatch, cls)
    run_suite(load_suite(path), tmp_path / "b", methods=[name])
    assert [s for s, _ in resumed] == [0, 1, 2] and [s for s, _ in after] == [3]
    assert after[0][1] == straight[3][1]  # identical next-step losses after resume

    state = checkpoint.load(outcome.spec.rundir.checkpoint)
    for name_, slot in state["slots"].items():
        assert slot["optimizer"]["state"] if name_ not in FROZEN else slot["optimizer"] is None  # frozen
    if name in ("advent", "advseg", "fada"):
        assert len(state["slots"]) > 1  # the discriminators and their optimizers
    model = build_model(outcome.spec.suite.model, 19)
    model.load_state_dict(state["slots"]["model"]["module"])
    assert model.eval()(torch.zeros(2, 3, 32, 64)).main.shape == (2, 19, 4, 8)


def one_step_backwards(name, write_suite):
    """Run one train_step; return, for each ctx.backward call, which slots' gradients changed."""
    suite = load_suite(write_suite())
    data = build_data(suite)
    cls = discover()[name]
    ctx, method = build_run(suite, cls, cls.Hparams(), torch.device("cpu"))
    source = default_collate([data.source[i] for i in range(2)])
    target = default_collate([data.target[i] for i in range(2)])
    target.pop("label")

    def grads():
        return {n: [p.grad.clone() if p.grad is not None else None for p in s.module.parameters()]
                for n, s in ctx.slots.items()}

    changed, backward = [], ctx.backward

    def tracking_backward(loss):
        before = grads()
        backward(loss)
        after = grads()
        changed.append({n for n in after if any(
            (a is not None) and (b is None or not torch.equal(a, b)) for a, b in zip(after[n], before[n]))})

    ctx.backward = tracking_backward
    ctx.start_step(0)
    method.train_step(source, target, 0)
    return changed


@pytest.mark.parametrize("name, discriminators", [("advent", {"d_main", "d_aux"}), ("advseg", {"d_main", "d_aux"}),
                                                   ("fada", {"d_fine"})])
def test_generator_and_discriminator_updates_are_separate(name, discriminators, write_suite):
    seg, adv, disc = one_step_backwards(name, write_suite)
    assert seg == {"model"}             # source CE reaches only the segmenter
    assert adv == {"model"}             # the generator step does not touch D
    assert disc == discriminators       # the D step does not touch the segmenter


def test_target_bn_control_changes_only_bn_statistics(write_suite, tmp_path):
    """The control differs from source-only exactly through target data in BN running statistics."""
    states = {}
    for name in ("source_only", "target_bn"):
        outcome = run_suite(load_suite(write_suite(iterations=1)), tmp_path / name, methods=[name])[0]
        states[name] = checkpoint.segmenter_state(checkpoint.load(outcome.spec.rundir.checkpoint))
    stats = [k for k in states["source_only"] if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in states["source_only"] if k.endswith("weight") and "bn" not in k]
    assert any(not torch.equal(states["source_only"][k], states["target_bn"][k]) for k in stats)
    assert all(torch.equal(states["source_only"][k], states["target_bn"][k]) for k in weights)


def test_a_methods_own_configuration_error_stops_the_plan_before_anything_is_built(write_suite, tmp_path, capsys):
    """Method.check runs when runs are planned: --dry-run and status refuse what the run would fail on."""
    from udabench.cli import main

    path = str(write_suite(lambda s: s["methods"].update(maxsquare_iw={"self_guided": True}) or
                           s["model"].update(multi_level=False)))
    for command in (["run", path, "--dry-run"], ["status", path], ["run", path]):
        assert main([*command, "--results", str(tmp_path)]) == 2
        assert "methods.maxsquare_iw.self_guided" in capsys.readouterr().err
    assert not (tmp_path / "tiny").exists()
