"""Suite schema, YAML loading, ``${ENV}`` expansion and ``--set a.b=c`` overrides.

A suite names the datasets, class set, model, schedule, methods and seeds of one benchmark. It is
validated strictly (see ``schema.py``) and written, resolved, into every run directory.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .classes import CLASS_SETS, ClassSet
from .data.synthetic import SyntheticConfig
from .errors import ConfigError
from .schema import closest, from_dict, to_dict


@dataclass
class DatasetConfig:
    dataset: str                              # a name known to udabench.data.get_dataset
    split: str = "train"
    root: str = ""                            # folder of the dataset; synthetic ones default to the cache
    size: tuple[int, int] | None = None       # network input (width, height); None = native
    limit: int | None = None                  # use only the first N items (smoke tests)


@dataclass
class DataConfig:
    source: DatasetConfig
    target: DatasetConfig
    eval: DatasetConfig                       # target eval split: labels kept at native resolution
    source_val: DatasetConfig | None = None   # held-out labelled source split, scored at every evaluation
    eval_batch_size: int = 1
    num_workers: int = 0


@dataclass
class ModelConfig:
    backbone: str = "resnet101"               # any timm model with features_only and output_stride
    pretrained: str = "none"                  # "none" | "timm" (timm's own weights) | path to a state dict
    aspp_dilations: tuple[int, ...] = (6, 12, 18, 24)   # (6, 12) = AdaptSegNet/MaxSquare 2-branch variant
    multi_level: bool = True                  # auxiliary ASPP head on layer3 (ADVENT/AdaptSegNet)
    bn_mode: Literal["frozen", "frozen_affine", "train"] = "frozen"
    channels_last: bool = False


@dataclass
class TrainConfig:
    iterations: int = 120000
    batch_size: int = 1                       # per domain: B source + B target images per step
    lr: float = 2.5e-4
    head_lr_mult: float = 10.0                # ASPP heads at 10x the backbone LR (DeepLab-V2)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    seg_aux_weight: float = 0.1               # source CE on the auxiliary head
    source_warmup: int = 0                    # first steps of UDA methods are plain source training
    eval_every: int = 2000
    checkpoint_every: int = 1000
    log_every: int = 50
    device: str = "auto"                      # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: Literal["none", "bf16", "fp16"] = "none"
    compile: bool = False                     # torch.compile the segmenter and the methods' modules
    deterministic: bool = False


@dataclass
class ReferenceRow:
    """A published result, copied from a paper's table, shown beside the measured rows."""
    source: str                               # paper, table and row the numbers come from
    miou: dict[str, float]                    # class set -> published mIoU (%), e.g. {synthia16: 40.8, synthia13: 47.6}
    iou: dict[str, float | None] = field(default_factory=dict)  # class name -> IoU (%); null where the table has "-"
    method: str = ""                          # the udabench method or ensemble it is the paper's version of
    backbone: str = "resnet101"
    eval: str = ""                            # eval dataset, when a suite can be pointed at several (cross-city)


@dataclass
class Suite:
    name: str
    data: DataConfig
    description: str = ""
    classes: str = "cityscapes19"             # class set the model is trained on
    eval_class_sets: list[str] = field(default_factory=list)  # extra subsets scored from one matrix
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {"source_only": {}})
    oracle: bool = True
    ensembles: dict[str, list[str]] = field(default_factory=dict)  # row label -> methods averaged
    references: dict[str, ReferenceRow] = field(default_factory=dict)  # row label -> published numbers
    seeds: list[int] = field(default_factory=lambda: [0])
    synthetic: SyntheticConfig | None = None
    source_file: str = ""                     # set by load_suite, not read from YAML

    @property
    def class_set(self) -> ClassSet:
        """The class set the model is trained on."""
        return CLASS_SETS[self.classes]

    def method_names(self) -> list[str]:
        names = list(self.methods)
        if self.oracle and "oracle" not in names:
            names.append("oracle")
        return names


# What `--quick` changes: a few iterations on tiny inputs, for smoke tests of a whole suite.
QUICK_OVERRIDES = {
    "train.iterations": 4, "train.eval_every": 4, "train.checkpoint_every": 2, "train.log_every": 1,
    "train.batch_size": 2,
}
QUICK_LIMIT = 8
QUICK_MAX_WIDTH = 64


def load_suite(path: str | Path, overrides: list[str] = (), quick: bool = False) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {str(path)!r} does not exist. Pass the path of a suite YAML "
                          f"(see `udabench list suites`).")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}. Fix the syntax at the line shown.") from None
    if quick:
        raw = apply_overrides(raw, [f"{k}={v}" for k, v in QUICK_OVERRIDES.items()], str(path))
    raw = apply_overrides(raw, list(overrides), str(path))
    raw = expand_env(raw, str(path))
    if isinstance(raw, dict) and "source_file" in raw:
        raise ConfigError(f"{path}: 'source_file' is set by udabench, not by the suite file.")
    suite = from_dict(Suite, raw, "", str(path))
    suite.source_file = str(path)
    if quick:
        _shrink_for_quick(suite)
    validate(suite)
    return suite


def validate(suite: Suite) -> None:
    src = suite.source_file
    for name in [suite.classes, *suite.eval_class_sets]:
        if name not in CLASS_SETS:
            raise ConfigError(f"{src}: unknown class set {name!r}.{closest(name, CLASS_SETS)} "
                              f"Known: {', '.join(CLASS_SETS)}.")
    for sub in suite.eval_class_sets:
        try:
            CLASS_SETS[suite.classes].subset_indices(CLASS_SETS[sub])
        except ValueError:
            raise ConfigError(f"{src}: eval_class_sets entry {sub!r} is not a subset of the training "
                              f"classes {suite.classes!r}.") from None
    if not suite.seeds:
        raise ConfigError(f"{src}: 'seeds' is empty; give at least one seed, e.g. seeds: [0].")
    if suite.train.iterations < 1:
        raise ConfigError(f"{src}: train.iterations must be >= 1.")
    for key in ("eval_every", "checkpoint_every", "log_every", "batch_size"):
        if getattr(suite.train, key) < 1:
            raise ConfigError(f"{src}: train.{key} must be >= 1.")
    if not suite.model.aspp_dilations:
        raise ConfigError(f"{src}: model.aspp_dilations needs at least one dilation.")
    names, sets = CLASS_SETS[suite.classes].names, [suite.classes, *suite.eval_class_sets]
    for label, row in suite.references.items():
        for key, known in (("iou", names), ("miou", sets)):
            for bad in set(getattr(row, key)) - set(known):
                raise ConfigError(f"{src}: references.{label}.{key} has {bad!r}, which is not one of "
                                  f"{', '.join(known)}.{closest(bad, known)}")


def apply_overrides(raw: Any, overrides: list[str], source: str) -> dict:
    """Apply ``a.b=value`` strings (value parsed as YAML) to the raw mapping, returning a copy."""
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. train.iterations=100).")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} in {source} is not a mapping.")
        node[parts[-1]] = yaml.safe_load(text)
    return raw


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, source: str, where: str = "") -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string; ``~`` at the start of a path too."""
    if isinstance(value, dict):
        return {k: expand_env(v, source, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, source, where) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: key {where!r} uses ${{{name}}} but the environment variable {name} "
                          f"is not set. Set it (e.g. `export {name}=/data`) or write the path directly.")

    out = _ENV.sub(sub, value)
    return os.path.expanduser(out) if out.startswith("~") else out


def _shrink_for_quick(suite: Suite) -> None:
    for ds in (suite.data.source, suite.data.target, suite.data.eval):
        ds.limit = min(ds.limit or QUICK_LIMIT, QUICK_LIMIT)
        if ds.size and ds.size[0] > QUICK_MAX_WIDTH:
            scale = QUICK_MAX_WIDTH / ds.size[0]
            ds.size = (QUICK_MAX_WIDTH, max(8, round(ds.size[1] * scale)))
    suite.data.eval_batch_size = min(suite.data.eval_batch_size, 2)


def resolved_dict(suite: Suite) -> dict:
    data = to_dict(suite)
    data.pop("source_file")
    data.pop("references")   # published numbers: not part of any run's identity or config
    return data
