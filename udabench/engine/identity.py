"""A run's identity: what defines it, its id, and its table row's key — the one place runs are named.

A run is named by ``{"suite": <resolved suite without methods/seeds>, "run": {method, hparams, seed, ...}}``
(``identity_of``; written to its ``config.yaml``). The id hashes it, so re-running a suite finds its finished
runs; the row key (``config_key``) hashes it without the seed, so the seeds of one configuration are one table
row. What does not define a run (``NOT_IDENTITY``), settings added later at the value earlier runs had
(``LATER_DEFAULTS``), hyper-parameters retired or added later (``RETIRED_HPARAMS``, ``LATER_HPARAMS``:
``comparable_run``) are kept out of both, so finished runs keep their ids and stay one row with new ones.
"""

from __future__ import annotations

import hashlib
import json

from ..config import AugmentConfig, EvalConfig, Suite, ValidatorConfig, resolved_dict
from ..data.synthetic import GENERATOR_VERSION
from ..schema import to_dict
from ..vocabulary import RunKind

MISSING = object()
# Suite fields (dotted) that do not define a run: adding a method or a seed must not orphan finished runs; where
# runs execute (the launcher: block) and how a run is watched (its loggers, engine/loggers.py) do not change what
# it computes. A run's own stage settings are in its own part of the identity ("stage", see ``stage_settings``);
# report: how tables read; ensembles are identified by their own run directories (engine/ensemble.py); sweep: a
# point's runs are identified by the settings it sets, so a point equal to the suite is the suite's run.
NOT_IDENTITY = ("methods", "seeds", "oracle", "ensembles", "ensemble_combine", "description", "launcher",
                "train.loggers", "train.panel_images", "stages", "report", "sweep")

# Settings added after runs were made, as (dotted key, default): at the default they compute what those runs
# computed (udabench's eval protocol; ImageNet input for timm backbones; no compilation, no augmentation, the
# poly schedule over the iterations, uniform sampling; each tensor listed once in the SGD, training losses on
# logits up-sampled without align_corners, zeroed head biases, BN epsilon 1e-5, a trainable stem BN;
# the label-free validators at their default sample: they change no training number), so they
# stay out of the identity and finished runs keep their ids. (A VGG-16 run from the caffe file now gets its BGR
# input under the same id.)
LATER_DEFAULTS = (("eval", to_dict(EvalConfig())), ("model.input_norm", "auto"), ("train.compile", False),
                  ("augment", to_dict(AugmentConfig())), ("train.poly_horizon", None),
                  ("train.source_sampler", "uniform"), ("train.param_listing", "unique"),
                  ("train.align_corners", False), ("model.head_bias_init", "zeros"), ("model.bn_eps", 1e-5),
                  ("model.freeze_stem_bn", False), ("validators", to_dict(ValidatorConfig())),
                  ("train.optimizer", "sgd"), ("train.warmup_iters", 0), ("train.warmup_ratio", 1e-6),
                  ("train.rcs_temperature", 0.01), ("train.rcs_min_pixels", 3000),
                  ("augment.source.cat_max_ratio", 1.0), ("augment.target.cat_max_ratio", 1.0))

# Settings that act only where another setting has a value, as {dotted key: (that key, its value)}: out of the
# identity elsewhere, and part of it, at any value, where they act. (Rare-class sampling's re-crop came after its
# first runs, which drew one crop: those keep their ids only where the sampler was not rare_class.)
ACTS_ONLY_WITH = {"train.rcs_min_crop_ratio": ("train.source_sampler", "rare_class")}


def suite_identity(suite: Suite) -> dict:
    """The part of a run's identity that its suite gives (everything that changes what a run computes)."""
    identity = resolved_dict(suite)
    flat = flatten(identity)
    for dotted in NOT_IDENTITY:
        parent, key = _parent(identity, dotted)
        parent.pop(key, None)
    for dotted, default in LATER_DEFAULTS:   # "augment.source.*" after "augment", which may have gone whole
        parent, key = _parent(identity, dotted)
        if parent.get(key, MISSING) == default:
            del parent[key]
    for dotted, (condition, value) in ACTS_ONLY_WITH.items():
        if flat.get(condition) != value:
            parent, key = _parent(identity, dotted)
            parent.pop(key, None)
    return identity


def _parent(tree: dict, dotted: str) -> tuple[dict, str]:
    """The mapping of ``tree`` that holds the dotted key ``dotted`` ("train.loggers") (empty where a mapping on the
    way is not there), and the key's last part."""
    *path, key = dotted.split(".")
    for part in path:
        tree = tree.get(part, {})
    return tree, key


def stage_settings(suite: Suite, run_suite: Suite) -> dict:
    """What a run's own suite (``config.stage_suite``) sets differently from its suite, as dotted keys: the
    ``stage`` of its identity, from which ``RunDir.suite`` rebuilds it."""
    base, own = (flatten({k: v for k, v in resolved_dict(s).items() if k not in NOT_IDENTITY})
                 for s in (suite, run_suite))
    acting = {k for k, (condition, value) in ACTS_ONLY_WITH.items()
              if own.get(condition) == value != base.get(condition)}   # acts in this stage only: named here
    return {k: v for k, v in own.items() if base.get(k, MISSING) != v or k in acting}


# Hyper-parameters removed after runs were made, as (method, name, the value all those runs had): hashed as if
# still there, so those runs keep their ids and stay one table row with new ones. (FADA's in-run
# self-distillation became a stage of its own, methods/self_distill.py; every FADA run before had it off.)
RETIRED_HPARAMS = (("fada", "self_distill_from", 0),)
# Hyper-parameters added after runs were made, as (method, name, default): hashed only away from the default, so
# those runs keep their ids. (FADA's adversarial losses at the input size, the official code's choice.)
LATER_HPARAMS = (("fada", "loss_resolution", "feature"),)


def comparable_run(run: dict) -> dict:
    """A run's own part of its identity as ids and table rows compare it: retired hyper-parameters at the value
    every earlier run had, later ones left out at their default."""
    hparams, method = run.get("hparams"), run.get("method")
    if not isinstance(hparams, dict):
        return run
    retired = {name: value for m, name, value in RETIRED_HPARAMS if m == method}
    later = {name for m, name, default in LATER_HPARAMS if m == method and hparams.get(name) == default}
    return {**run, "hparams": {k: v for k, v in {**retired, **hparams}.items() if k not in later}}


def run_id(identity: dict) -> str:
    flat = {**identity["suite"], **comparable_run(identity["run"])}   # hashed flat: ids stay those of earlier versions
    blob = json.dumps(flat, sort_keys=True, default=str).encode()
    return f"seed{identity['run']['seed']}-{hashlib.sha1(blob).hexdigest()[:10]}"


def config_key(identity: dict, ignore=()) -> str:
    """A short hash of the identity without its seed (and the dotted ``ignore`` fields): one table row."""
    flat = flatten({**identity["suite"], **{k: v for k, v in comparable_run(identity["run"]).items() if k != "seed"}})
    kept = {k: v for k, v in flat.items() if k not in ignore}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:10]


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested mappings as one level of dotted keys (lists stay values)."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        out |= flatten(value, f"{name}.") if isinstance(value, dict) and value else {name: value}
    return out




def run_kind(run: dict) -> RunKind:
    """What a run is, from its own part of the identity (the keys ``identity_of`` was given)."""
    for key, kind in (("warmup", RunKind.WARMUP), ("ensemble", RunKind.ENSEMBLE), ("released", RunKind.RELEASED)):
        if run.get(key):
            return kind
    return RunKind.TRAINED


def identity_of(suite: Suite, seed: int, *, world_size: int = 1, **run) -> dict:
    """A run identity: the suite's part and the run's own (method, hparams, ...; dataclasses as dicts).

    ``world_size`` (processes per run, torchrun's) changes the effective batch, so it is part of the identity;
    only above 1, so single-process runs keep the ids they always had."""
    if suite.synthetic is not None:  # same knobs, new scenes: a finished run of older scenes must not count
        run["synthetic_generator"] = GENERATOR_VERSION
    if world_size > 1:
        run["world_size"] = world_size
    return {"suite": suite_identity(suite), "run": {**{k: to_dict(v) for k, v in run.items()}, "seed": seed}}
