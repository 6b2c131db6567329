"""The ladder's factors: which named group of protocol settings each differing setting of two suites belongs to.

A setting is a dotted key of a suite as ``ladder.build`` flattens it (``train.lr``, ``stages.minent.start_from``,
``methods.minent.lambda_ent``). A stage's own settings (``stages.<method>.<block>...``) belong to the factor of the
suite setting they override, so that a recipe's staged schedule and the common suite's single one move together.
The settings no pattern knows form one factor of their own, ``other``, named by their keys in every table:
nothing is silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Factor:
    name: str
    title: str
    patterns: tuple[str, ...]   # fnmatch patterns over the dotted key (a stage's prefix removed)

    def holds(self, key: str) -> bool:
        return any(fnmatchcase(key, p) for p in self.patterns)


# The default order of the rungs, FROM → TO. Selection before evaluation and schedule: a recipe's selection may read
# a field that only its evaluation (eval.validation, data.source_val) records, so going from a recipe to the common
# protocol the selection leaves first; the reverse order (--both-orders) adds it last, again valid.
FACTORS = (
    Factor("optimizer", "optimizer, its listing and settings",
           ("train.optimizer", "train.param_listing", "train.lr", "train.head_lr_mult", "train.momentum",
            "train.weight_decay")),
    Factor("upsampling", "training up-sampling", ("train.align_corners",)),
    Factor("init", "init weights and input normalisation",
           ("model.pretrained", "model.input_norm", "model.head_bias_init")),
    Factor("bn", "BN mode", ("model.bn_mode", "model.bn_eps", "model.freeze_stem_bn")),
    Factor("network", "network (backbone, ASPP, heads)",
           ("model.backbone", "model.aspp_dilations", "model.multi_level", "train.seg_aux_weight")),
    Factor("selection", "checkpoint selection", ("report.selection",)),
    Factor("schedule", "schedule and stages (iterations, poly horizon, LR restarts, warm-up)",
           ("train.iterations", "train.poly_horizon", "train.poly_power", "train.source_warmup", "train.eval_every",
            "train.checkpoint_every", "train.log_every", "train.warmup_iters", "train.warmup_ratio", "start_from",
            "start_selection", "teacher")),
    Factor("batch", "batch and input sizes", ("train.batch_size", "data.source.size", "data.target.size")),
    Factor("augmentation", "augmentation and sampling",
           ("augment.*", "train.source_sampler", "train.rcs_temperature", "train.rcs_min_pixels", "data.source.split", "data.target.split", "data.source.limit",
            "data.target.limit")),
    Factor("evaluation", "evaluation options",
           ("eval.*", "data.eval.*", "data.source_val", "data.source_val.*", "data.eval_batch_size")),
    Factor("hparams", "method hyper-parameters", ("methods.*",)),
)
BY_NAME = {f.name: f for f in FACTORS}

# Suite keys that define no run (engine/identity.py NOT_IDENTITY, less report.selection, a factor of its own) nor a
# rung: the ladder names its own suite, keeps the methods of its rungs and no ensemble, oracle or published row.
IGNORED = ("name", "description", "seeds", "oracle", "ensembles", "ensembles.*", "ensemble_combine", "references",
           "references.*", "launcher.*", "train.loggers", "train.panel_images", "data.num_workers")
_STAGE = re.compile(r"stages\.[^.]+\.(.+)")


def setting_of(key: str) -> str:
    """The suite setting a dotted key sets: a stage's own key without its ``stages.<method>.`` prefix."""
    match = _STAGE.fullmatch(key)
    return match.group(1) if match else key


def ignored(key: str) -> bool:
    return any(fnmatchcase(key, p) for p in IGNORED)


OTHER = "other"   # the factor of the settings no pattern knows


def factor_of(key: str) -> str:
    """The name of the factor of a dotted key (``OTHER`` for a setting no factor knows)."""
    setting = setting_of(key)
    return next((f.name for f in FACTORS if f.holds(setting)), OTHER)


def group(keys) -> dict[str, list[str]]:
    """Differing keys by factor, factors in the default order (``OTHER`` last), keys sorted."""
    found: dict[str, list[str]] = {}
    for key in sorted(keys):
        found.setdefault(factor_of(key), []).append(key)
    return {name: found[name] for name in [*BY_NAME, OTHER] if name in found}


def title(name: str, keys=()) -> str:
    """A factor's title in tables; ``OTHER`` is named by its keys."""
    return BY_NAME[name].title if name in BY_NAME else f"other settings: {', '.join(keys)}"
