"""The settings that make a paper recipe train and score as the official code: each is off in udabench's protocol
(same run ids, same rows), recorded in identity and protocol when on, and does what its official value does."""

from __future__ import annotations

import contextlib

import pandas as pd
import pytest
import torch
import yaml
from helpers import crafted_suite, tiny_suite_dict

from udabench.analysis.configurations import configuration
from udabench.analysis.report import _recipe_notes
from udabench.checkpoint import load
from udabench.config import load_suite
from udabench.engine.build import build_run
from udabench.engine.evalrun import eval_split
from udabench.engine.evaluate import evaluate, scores
from udabench.engine.identity import identity_of
from udabench.engine.plan import make_plan
from udabench.engine.rows import protocol
from udabench.engine.rundir import RunDir
from udabench.engine.runner import run_suite
from udabench.engine.trained import final_model, load_selected
from udabench.errors import CheckpointError, ConfigError
from udabench.models import DeepLabV2
from udabench.registry import get_method
from udabench.selection import selected_step


def write(tmp_path, suite: dict, name: str = "suite.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    return path


# (udabench's value, the official recipes' value, the protocol field that records it), as --set values
SETTINGS = {"train.param_listing": ("unique", "deeplab_official", "param_listing"),
            "train.align_corners": ("false", "true", "train_align_corners"),
            "model.head_bias_init": ("zeros", "pytorch", "head_bias_init"),
            "model.bn_eps": ("1.0e-5", "0", "bn_eps"),
            "model.freeze_stem_bn": ("false", "true", "freeze_stem_bn"),
            "train.optimizer": ("sgd", "adamw", "optimizer"),        # DAFormer/MIC (test_optimizers.py)
            "train.warmup_iters": ("0", "2", "warmup_iters"),
            "train.warmup_ratio": ("1.0e-6", "0.1", "warmup_ratio"),
            "train.rcs_temperature": ("0.01", "0.5", "rcs_temperature"),    # DAFormer (test_rare_class.py)
            "train.rcs_min_pixels": ("3000", "100", "rcs_min_pixels")}


@pytest.mark.parametrize("key", SETTINGS)
def test_a_recipe_setting_at_its_default_keeps_the_run_id_and_away_from_it_is_identity_and_protocol(key, write_suite,
                                                                                                     tmp_path):
    default, official, field = SETTINGS[key]
    frozen = ["model.bn_mode=frozen"]   # bn_eps 0 needs it; the other settings do not care

    def run(*overrides):
        suite = load_suite(write_suite(), [*frozen, *overrides])
        return RunDir(tmp_path, suite.name, "source_only", identity_of(suite, 0, method="source_only",
                                                                        hparams={})).id, protocol(suite, 0)

    (base_id, base), (default_id, _), (official_id, changed) = run(), run(f"{key}={default}"), run(f"{key}={official}")
    assert default_id == base_id != official_id
    assert field not in base and changed[field] == yaml.safe_load(official)


def test_model_settings_act_on_the_network():
    zeros, official = (DeepLabV2("resnet10t", 19, head_bias_init=init) for init in ("zeros", "pytorch"))
    assert all(conv.bias.abs().sum() == 0 for conv in zeros.head.branches)
    assert all(conv.bias.abs().sum() > 0 for conv in official.head.branches)   # nn.Conv2d's U(±1/√fan_in)
    model = DeepLabV2("resnet10t", 19, bn_mode="train", bn_eps=0.0, freeze_stem_bn=True)
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {bn.eps for bn in norms} == {0.0}
    assert not norms[0].weight.requires_grad and all(bn.weight.requires_grad for bn in norms[1:])
    with pytest.raises(ConfigError, match="freeze_stem_bn.*no batch normalisation"):
        DeepLabV2("vgg16", 19, multi_level=False, freeze_stem_bn=True)


def test_an_epsilon_of_zero_is_refused_with_batch_statistics(write_suite):
    with pytest.raises(ConfigError, match="bn_eps is 0 with model.bn_mode 'train'.*bn_mode: frozen"):
        load_suite(write_suite(), ["model.bn_eps=0"])


def test_training_losses_follow_train_align_corners(write_suite):
    logits = torch.randn(1, 3, 5, 7)
    for align in (False, True):
        suite = load_suite(write_suite(), [f"train.align_corners={str(align).lower()}"])
        ctx, _ = build_run(suite, get_method("source_only"), get_method("source_only").Hparams(), torch.device("cpu"))
        expected = torch.nn.functional.interpolate(logits, size=(20, 30), mode="bilinear", align_corners=align)
        assert torch.equal(ctx.upsample(logits, (20, 30)), expected)


def test_old_and_new_fada_runs_of_one_configuration_are_one_table_row(tmp_path):
    """A hyper-parameter added later (FADA's loss_resolution) at its default: the same run id and the same row as
    a run made before it existed (and a retired one, self_distill_from, at the value those runs had)."""
    suite = crafted_suite()
    hparams = {"lambda_adv": 0.001, "temperature": 1.8}
    old = RunDir(tmp_path, "s", "fada", identity_of(suite, 0, method="fada", hparams={**hparams, "self_distill_from": 0}))
    new = RunDir(tmp_path, "s", "fada", identity_of(suite, 0, method="fada",
                                                    hparams={**hparams, "loss_resolution": "feature"}))
    official = RunDir(tmp_path, "s", "fada", identity_of(suite, 0, method="fada",
                                                         hparams={**hparams, "loss_resolution": "input"}))
    assert old.id == new.id != official.id
    assert configuration(old, "measured").key == configuration(new, "measured").key
    assert configuration(official, "measured").key != configuration(new, "measured").key


# ---- selected checkpoints: stages and ensembles -------------------------------------------------------------------

def staged(tiny_data, **extra) -> dict:
    """Source-only for 6 steps evaluated every 2 with a source val split, then MinEnt from the source run's
    checkpoint that source-val picks."""
    suite = tiny_suite_dict(tiny_data, iterations=4, eval_every=2, checkpoint_every=2)
    suite["methods"], suite["oracle"] = {"source_only": {}, "minent": {}}, False
    suite["stages"] = {"source_only": {"train": {"iterations": 6, "lr": 0.05},
                                       "data": {"source_val": {**suite["data"]["source"]}}},
                       "minent": {"start_from": "source_only", "start_selection": "source-val"}}
    return suite | extra


def test_a_stage_starts_from_the_checkpoint_its_selection_picks(tiny_data, tmp_path):
    outcomes = run_suite(load_suite(write(tmp_path, staged(tiny_data))), tmp_path / "r", methods=["minent"])
    source, minent = (o.spec.rundir for o in outcomes)
    kept = source.selected_checkpoint("source-val")
    picked = selected_step(source.rows(), "source-val")
    rows = {r["step"]: r["source_val_miou"] for r in source.rows()}
    assert picked == max(sorted(rows, reverse=True), key=rows.get)          # the best, latest on ties
    state = load(kept)
    assert state["step"] == picked and state["slots"]["model"]["optimizer"] is None
    log = (minent.path / "log.txt").read_text()
    assert f"weights selected by source-val of source_only: {kept} (step {picked};" in log
    assert minent.run["start_from"]["selection"] == "source-val"
    assert minent.rows()[-1]["protocol"]["stages"][1]["start_selection"] == "source-val"

    # the kept checkpoint must be the one the rows pick; a disagreement is named, never used
    lines = source.metrics.read_text().splitlines()
    source.metrics.write_text("\n".join(l for l in lines if f'"step": {picked},' not in l) + "\n")
    with pytest.raises(CheckpointError, match=f"holds step {picked}, but 'source-val' picks step"):
        load_selected(source, "source-val", "cpu", fix="")


def test_a_selected_start_needs_the_field_its_protocol_reads(tiny_data, tmp_path):
    suite = staged(tiny_data)
    del suite["stages"]["source_only"]["data"]
    with pytest.raises(ConfigError, match="start_selection is 'source-val'.*data.source_val"):
        load_suite(write(tmp_path, suite))


def test_an_ensemble_combines_its_members_selected_checkpoints_as_the_suite_says(tiny_data, tmp_path):
    suite = tiny_suite_dict(tiny_data, iterations=4, eval_every=1, checkpoint_every=2)
    suite |= {"methods": {"source_only": {}, "minent": {}}, "oracle": False, "ensembles": {"Both": ["source_only",
              "minent"]}, "report": {"selection": "oracle-target-val"}, "ensemble_combine": "mean_logits"}
    loaded = load_suite(write(tmp_path, suite))
    run_suite(loaded, tmp_path / "r")
    (planned,) = make_plan(loaded, tmp_path / "r").ensembles
    specs, ensemble = planned.members, planned.rundir
    row = ensemble.rows()[-1]
    assert row["protocol"]["member_selection"] == "oracle-target-val" and row["protocol"]["combine"] == "mean_logits"
    assert ensemble.run["member_selection"] == "oracle-target-val"

    models = []
    for spec in specs:
        picked = selected_step(spec.rundir.rows(), "oracle-target-val")
        assert load(spec.rundir.selected_checkpoint("oracle-target-val"))["step"] == picked
        models.append(final_model(spec.rundir, "cpu", "oracle-target-val"))
    loader = torch.utils.data.DataLoader(eval_split(loaded), batch_size=2)
    by_hand = evaluate(lambda x: sum(m(x).main for m in models) / 2, loader, 19, torch.device("cpu"),
                       contextlib.nullcontext, options=loaded.eval)
    assert torch.equal(torch.as_tensor(ensemble.load_eval(row["eval_file"])[0]).sum(0), by_hand.cm.cpu())


def test_the_in_training_validation_is_scored_beside_the_reported_evaluation(tiny_data, tmp_path):
    suite = tiny_suite_dict(tiny_data, iterations=2, eval_every=2)
    suite |= {"methods": {"source_only": {}}, "oracle": False, "report": {"selection": "oracle-in-training-val"},
              "eval": {"flip": True, "validation": {"size": [48, 24], "flip": False}}}
    loaded = load_suite(write(tmp_path, suite))
    (outcome,) = run_suite(loaded, tmp_path / "r")
    row = outcome.spec.rundir.rows()[-1]
    model = final_model(outcome.spec.rundir, "cpu")
    view = load_suite(write(tmp_path, suite | {"data": {**suite["data"], "eval": {**suite["data"]["eval"],
                                                                                   "size": [48, 24]}}}, "v.yaml"))
    loader = torch.utils.data.DataLoader(eval_split(view), batch_size=2)
    validation = evaluate(lambda x: model(x).main, loader, 19, torch.device("cpu"), contextlib.nullcontext,
                          options=loaded.eval.for_validation())
    assert row["val_miou"] == scores(loaded, validation.cm, validation.entropy)["miou"]
    assert row["val_miou"] != row["miou"] and row["protocol"]["eval_validation"] == {"size": [48, 24], "flip": False}
    assert outcome.spec.keep == ("oracle-in-training-val",)
    assert load(outcome.spec.rundir.selected_checkpoint("oracle-in-training-val"))["step"] == 2


def test_reports_name_the_recipe_settings_their_rows_use():
    group = pd.DataFrame({"protocol": [{"param_listing": "deeplab_official", "train_align_corners": True},
                                       {"param_listing": "deeplab_official", "bn_eps": 0}]})
    (note,) = _recipe_notes(group)
    assert "param_listing = deeplab_official (segmenter SGD" in note and "train_align_corners = True" in note
    assert "bn_eps = 0 (BN epsilon)" in note and "head_bias_init" not in note
    assert _recipe_notes(pd.DataFrame({"protocol": [{"bn_mode": "train"}]})) == []
