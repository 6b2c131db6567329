"""Suite schema, YAML loading (``extends:``), ``${ENV}`` expansion, ``--set a.b=c`` overrides and stages.

A suite names the datasets, class set, model, schedule, methods and seeds of one benchmark. It is
validated strictly (see ``schema.py``) and written, resolved, into every run directory. A suite file may
``extends:`` others (a base plus overrides, merged before validation), and its ``stages:`` block gives a
method's runs settings of their own and a run to start from (``stage_suite``; docs/recipes.md).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import MISSING, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from .builtin import builtin_suite, suite_files
from .classes import CLASS_SETS, ClassSet
from .data.synthetic import DomainStyle, SyntheticConfig
from .errors import ConfigError
from .schema import (
    FOLDER_NAME,
    FOLDER_NAME_RULE,
    NOT_EMPTY,
    Rule,
    above,
    at_least,
    below,
    between,
    check_setting,
    closest,
    constrain,
    each,
    from_dict,
    matches,
    setting,
    show,
    to_dict,
)
from .tracking import default_loggers

# Seeds seed numpy (< 2**32) and torch, and the trainer derives more from them (seed + 7919, seed * 1000 +
# stream); up to 2**31 - 1 every derived seed stays valid.
SEED_MAX = 2**31 - 1
SEED = between(0, SEED_MAX)
MIN_SIZE = 8   # the network's output stride: a smaller input has no output cell
NAME = matches(FOLDER_NAME, f"a folder name: {FOLDER_NAME_RULE}",
               "The name, after ${VAR} expansion and --set name=..., becomes the suite's folder under --results.")
DEVICE = matches(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N", "Set train.device to one of those.")


@dataclass
class DatasetConfig:
    dataset: str = setting(MISSING, NOT_EMPTY)    # a name known to udabench.data.get_dataset
    split: str = setting("train", NOT_EMPTY)
    root: str = ""                            # folder of the dataset; synthetic ones default to the cache
    size: tuple[int, int] | None = setting(None, each(at_least(MIN_SIZE)))  # network input (W, H); None = native
    limit: int | None = setting(None, at_least(1))  # use only the first N items (smoke tests)


@dataclass
class DataConfig:
    source: DatasetConfig
    target: DatasetConfig
    eval: DatasetConfig                       # target eval split: labels at native resolution (eval.label_size)
    source_val: DatasetConfig | None = None   # held-out labelled source split, scored at every evaluation
    eval_batch_size: int = setting(1, at_least(1))
    num_workers: int = setting(0, at_least(0))


@dataclass
class ModelConfig:
    backbone: str = setting("resnet101", NOT_EMPTY)   # any timm model with features_only and output_stride
    pretrained: str = setting("none", NOT_EMPTY)      # "none" | "timm" (timm's own weights) | path to a state dict
    aspp_dilations: tuple[int, ...] = setting((6, 12, 18, 24), NOT_EMPTY, each(at_least(1)))  # (6, 12) = 2-branch
    multi_level: bool = True                  # auxiliary ASPP head on layer3 (ADVENT/AdaptSegNet)
    bn_mode: Literal["frozen", "frozen_affine", "train"] = "frozen"
    # what the weights expect (models/input_norm.py); auto follows the backbone and the layout of its weights file
    input_norm: Literal["auto", "imagenet", "caffe_bgr", "caffe_bgr_vgg"] = "auto"
    channels_last: bool = False
    # ASPP biases: zeroed, or nn.Conv2d's default U(±1/√fan_in) as the official heads keep them
    head_bias_init: Literal["zeros", "pytorch"] = "zeros"
    bn_eps: float = setting(1e-5, at_least(0))   # every BN's epsilon; FADA's FrozenBatchNorm2d has none (0)
    freeze_stem_bn: bool = False              # the stem BN's γ/β frozen in bn_mode train (MaxSquare)


@dataclass
class ValidationConfig:
    """An official code's in-training validation, which picks the checkpoint it keeps as ``best`` (MaxSquare:
    ``train_source.py:144-150``, ``solve_gta5.py:96-110``), scored at every evaluation beside the reported scores:
    the target eval split at ``size`` → ``val_miou`` (selection ``oracle-in-training-val``), and ``data.source_val``
    at its own size → ``source_val_miou`` (selection ``source-val``), both with ``flip``."""
    size: tuple[int, int] | None = setting(None, each(at_least(MIN_SIZE)))   # (W, H); None: data.eval.size
    flip: bool = False


@dataclass
class EvalConfig:
    """How eval scores are computed (docs/protocol.md); the defaults are udabench's protocol."""
    flip: bool = False                        # average the softmax with that of the flipped image (MaxSquare)
    label_size: Literal["native", "input"] = "native"   # labels at full resolution, or resized (nearest) to the input
    align_corners: bool = False               # of the bilinear up-sampling of logits (the official code: True)
    validation: ValidationConfig | None = None   # None: no second pass; source_val is scored as the eval split

    def for_validation(self) -> EvalConfig:
        """The options of the in-training validation passes (``data.source_val``, ``validation``)."""
        return self if self.validation is None else replace(self, flip=self.validation.flip, validation=None)


@dataclass
class TrainConfig:
    iterations: int = setting(120000, at_least(1))
    batch_size: int = setting(1, at_least(1))     # per domain: B source + B target images per step
    lr: float = setting(2.5e-4, above(0))
    head_lr_mult: float = setting(10.0, above(0))  # ASPP heads at 10x the backbone LR (DeepLab-V2)
    momentum: float = setting(0.9, at_least(0), below(1))
    weight_decay: float = setting(5e-4, at_least(0))
    poly_power: float = setting(0.9, at_least(0))
    seg_aux_weight: float = setting(0.1, at_least(0))  # source CE on the auxiliary head
    source_warmup: int = setting(0, at_least(0))  # first steps of UDA methods are plain source training
    eval_every: int = setting(2000, at_least(1))
    checkpoint_every: int = setting(1000, at_least(1))
    log_every: int = setting(50, at_least(1))
    device: str = setting("auto", DEVICE)         # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: Literal["none", "bf16", "fp16"] = "none"
    compile: bool = False                     # torch.compile the segmenter and the methods' modules
    deterministic: bool = False
    # How a run is watched (engine/loggers.py, docs/monitoring.md), not what it computes: not part of its identity.
    loggers: list[Literal["tensorboard", "wandb", "mlflow"]] = field(default_factory=default_loggers)
    panel_images: int = setting(3, at_least(0))   # target eval images in each evaluation's logged panel (0: none)
    # Poly LR as if the schedule had this many steps (ADVENT: 250k, stopped at 120k); None = iterations.
    poly_horizon: int | None = setting(None, at_least(1))
    source_sampler: Literal["uniform", "class_balanced", "rare_class"] = "uniform"   # class_balanced: FADA
    # (engine/balanced.py); rare_class: DAFormer (engine/rare_class.py), with these two:
    rcs_temperature: float = setting(0.01, above(0))   # P(c) = softmax((1 − f_c) / T)
    rcs_min_pixels: int = setting(3000, at_least(0))   # an image is drawn for c if it has more pixels of c
    # ... and its augmented crop is drawn again (up to 10 times) until it holds more than rcs_min_crop_ratio ×
    # rcs_min_pixels pixels of c (DAFormer: 0.5; 0 = the first crop)
    rcs_min_crop_ratio: float = setting(0.5, at_least(0))
    # How the segmenter's SGD lists its parameters (engine/listing.py): each once, or as the DeepLab lineage's
    # generator repeats them (ADVENT, MaxSquare: a backbone tensor takes 3-4 momentum steps per iteration)
    param_listing: Literal["unique", "deeplab_official"] = "unique"
    align_corners: bool = False               # of the up-sampling of logits in every training loss (official: True)
    # The segmenter's optimizer over the same groups (backbone, heads × head_lr_mult): SGD (momentum, weight_decay),
    # or AdamW with betas (0.9, 0.999) and decoupled weight_decay (DAFormer/MIC: lr 6e-5, weight_decay 0.01)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    # mmcv's linear warm-up on top of the poly LR for the first warmup_iters steps of every optimizer: the LR of step
    # i is poly_i × (1 − (1 − i/warmup_iters)(1 − warmup_ratio)) (DAFormer/MIC: 1500 steps, ratio 1e-6)
    warmup_iters: int = setting(0, at_least(0))
    warmup_ratio: float = setting(1e-6, between(0, 1))


# YAML 1.1 reads an unquoted 24:00:00 as the number 86400 (base 60), so a number is refused with that hint.
SLURM_TIME = Rule(lambda v: isinstance(v, str) and re.fullmatch(r"(\d+-)?\d+(:\d+){0,2}", v) is not None,
                  "a quoted SLURM time such as '24:00:00', '2-00:00:00' or '90' (minutes)",
                  "Unquoted, YAML reads 24:00:00 as the number 86400: write time: \"24:00:00\".")


@dataclass
class LauncherConfig:
    """How `udabench run --launcher local|slurm|print` spreads the runs (docs/launching.md); the command line
    overrides each key. Never part of a run's identity: where a run executes does not change what it computes."""
    gpus_per_run: int = setting(1, at_least(1))   # processes per run; > 1: torchrun, one process per GPU
    partition: str = ""                       # SLURM partition ("" = the cluster's default)
    time: str | int = setting("24:00:00", SLURM_TIME)   # a string; an int is only YAML's unquoted 24:00:00
    cpus_per_run: int = setting(8, at_least(1))
    mem_gb: float = setting(0.0, at_least(0))  # 0 = the cluster's default
    array_parallelism: int = setting(0, at_least(0))   # at most this many array tasks at once (0 = no limit)
    sbatch: dict[str, str] = field(default_factory=dict)   # more sbatch options, e.g. {account: x, qos: high}


@dataclass
class Jitter:
    """torchvision ``ColorJitter`` factors: brightness, contrast, saturation in [max(0, 1-x), 1+x]; hue in [-x, x]."""
    brightness: float = setting(0.0, at_least(0))
    contrast: float = setting(0.0, at_least(0))
    saturation: float = setting(0.0, at_least(0))
    hue: float = setting(0.0, between(0, 0.5))


@dataclass
class DomainAugment:
    """Random changes of one domain's training images, in this order: jitter, scale, crop, flip, blur."""
    jitter: Jitter | None = None
    scale: tuple[float, float] | None = setting(None, each(above(0)))   # rescale factor U(lo, hi), then ...
    crop: tuple[int, int] | None = setting(None, each(at_least(MIN_SIZE)))   # ... a random (W, H) crop, padded
    # mmseg's RandomCrop(cat_max_ratio): a crop whose largest labelled class covers this share or more (or that holds
    # one class only) is drawn again, up to 10 times (DAFormer/MIC on GTA5: 0.75); 1 = off. Source only: udabench
    # never reads the target's training labels.
    cat_max_ratio: float = setting(1.0, between(0, 1))
    flip: float = setting(0.0, between(0, 1))     # probability of a horizontal flip
    blur: float = setting(0.0, between(0, 1))     # probability of a PIL Gaussian blur of radius U(0, blur_radius)
    blur_radius: float = setting(1.0, above(0))


@dataclass
class AugmentConfig:
    """Training-image augmentation per domain (engine/augment.py); the eval split is never augmented."""
    source: DomainAugment = field(default_factory=DomainAugment)
    target: DomainAugment = field(default_factory=DomainAugment)


@dataclass
class StageConfig:
    """One method's runs as a stage of a recipe: its own settings and where it starts (docs/recipes.md)."""
    start_from: str = ""                      # a method of the suite: start from its final weights (same seed)
    # ... or from its checkpoint that this selection protocol picks (kept while that run trains: RunSpec.keep)
    start_selection: str = "last"
    teacher: str = ""                         # a method of the suite whose final model labels the target images
    train: dict[str, Any] = field(default_factory=dict)     # deep-merged over the suite's blocks of these names
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)


@dataclass
class ValidatorConfig:
    """Label-free validators scored at every evaluation (udabench/validators.py, docs/selection.md) on a fixed, seeded
    sample of the target *training* split (never the eval split, never a label), and of the source training split
    for the discriminator's accuracy. They change no training number: the sample is drawn from its own generators."""
    images: int = setting(16, at_least(0))    # images in the sample (0: no validators)
    pixels: int = setting(100, at_least(2))   # pixels drawn per image for SND and BNM (SND's segmentation recipe)
    temperature: float = setting(0.05, above(0))   # of SND's similarities (Saito et al.)
    seed: int = setting(0, SEED)              # of the image sample and of the pixel draws


@dataclass
class ReportConfig:
    selection: str = "last"                   # the default checkpoint selection of `udabench report`


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
    name: str = setting(MISSING, NAME)
    data: DataConfig
    description: str = ""
    classes: str = "cityscapes19"             # class set the model is trained on
    eval_class_sets: list[str] = field(default_factory=list)  # extra subsets scored from one matrix
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {"source_only": {}})
    stages: dict[str, StageConfig] = field(default_factory=dict)   # method -> its stage (settings, start)
    oracle: bool = True
    ensembles: dict[str, list[str]] = field(default_factory=dict)  # row label -> methods averaged
    # how an ensemble combines its members (engine/ensemble.py): the mean of their softmaxes, or of their logits
    # (ADVENT eval_UDA.py:54-63); members are their checkpoints chosen by report.selection
    ensemble_combine: Literal["mean_softmax", "mean_logits"] = "mean_softmax"
    references: dict[str, ReferenceRow] = field(default_factory=dict)  # row label -> published numbers
    seeds: list[int] = setting([0], NOT_EMPTY, each(SEED))
    synthetic: SyntheticConfig | None = None
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    validators: ValidatorConfig = field(default_factory=ValidatorConfig)
    # dotted key -> values: one point per combination, each the suite with those --set (sweep.py; not identity)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
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


# The synthetic generator's knobs, declared here: the generator module knows nothing of suite files.
UNIT = between(0, 1)
constrain(SyntheticConfig, seed=SEED, height=at_least(MIN_SIZE), width=at_least(MIN_SIZE), num_source=at_least(1),
          num_target_train=at_least(1), num_target_val=at_least(1))
constrain(DomainStyle, palette_shift=UNIT, texture=UNIT, blur=at_least(0), noise=at_least(0), lighting=UNIT,
          horizon=UNIT, object_frequency=at_least(0), vehicle_frequency=at_least(0))

# What `--quick` changes: a few iterations on tiny inputs, for smoke tests of a whole suite, and the suite's name: a
# smoke run is a suite of its own (results/<name>-quick/), so no table or status mixes it with real runs.
QUICK_SUFFIX = "-quick"
QUICK_OVERRIDES = {
    "train.iterations": 4, "train.eval_every": 4, "train.checkpoint_every": 2, "train.log_every": 1,
    "train.batch_size": 2,
}
QUICK_LIMIT = 8
QUICK_MAX_WIDTH = 64


def load_suite(path: str | Path, overrides: list[str] = (), quick: bool = False) -> Suite:
    path = Path(path)
    raw = read_suite_tree(path)
    if quick:
        raw = apply_overrides(raw, [f"{k}={v}" for k, v in QUICK_OVERRIDES.items()], str(path))
        _quick_stages(raw)
    raw = drop_removed_entries(apply_overrides(raw, list(overrides), str(path), Suite))
    raw = expand_env(raw, str(path))
    if "source_file" in raw:
        raise ConfigError(f"{path}: 'source_file' is set by udabench, not by the suite file.")
    _quick_name(raw, quick, str(path))
    suite = from_dict(Suite, raw, "", str(path))
    suite.source_file = str(path)
    if quick:
        _shrink_for_quick(suite)
    validate(suite)
    return suite


def read_suite_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The raw mapping of a suite file with its ``extends:`` resolved: each base (a path relative to the file,
    or a list of them, later ones winning) read the same way, then this file deep-merged over them (mappings
    merged key by key, lists and scalars replaced)."""
    raw = read_suite_file(path)
    bases = raw.pop("extends", None)
    if bases is None:
        return drop_removed_entries(raw)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: 'extends' must be the path of a suite file (relative to {path.parent}) or a "
                          f"list of them, got {show(bases)}.")
    chain = (*chain, path.resolve())
    merged: dict = {}
    for base in bases:
        file = _base_file(path, base)
        if file.resolve() in chain:
            loop = " -> ".join(str(p) for p in (*chain, file.resolve()))
            raise ConfigError(f"{path}: 'extends: {base}' makes a cycle ({loop}); a suite cannot extend itself, "
                              f"directly or through its bases. Remove one of these extends.")
        merged = deep_merge(merged, read_suite_tree(file, chain))
    return drop_removed_entries(deep_merge(merged, raw))


def _base_file(path: Path, base: str) -> Path:
    """The file ``extends: base`` of the suite file ``path`` names: a path relative to its folder, else a suite of
    ``./suites/`` or a built-in one by name or path (``toy_sim2real``, ``paper/_gta5.yaml``), as installed."""
    file = path.parent / base
    if file.is_file():
        return file
    named = builtin_suite(base)
    if named is not None:
        return named
    raise ConfigError(f"{path}: 'extends: {base}': there is no suite file {file} and no suite named {base!r}."
                      f"{closest(Path(base).with_suffix('').as_posix(), suite_files())} Give a path relative to the "
                      f"folder of {path.name} ({path.parent}), or the name of a suite (`udabench list suites`).")


# The suite's mappings of named entries. An entry set to null is removed: how an extending suite (or --set) drops a
# base's method, stage, ensemble, published row or swept key; null is no entry's value otherwise.
ENTRY_MAPPINGS = ("methods", "stages", "ensembles", "references", "sweep")


def drop_removed_entries(raw: dict) -> dict:
    """``raw`` without the null entries of its ``ENTRY_MAPPINGS``."""
    return raw | {key: {name: entry for name, entry in raw[key].items() if entry is not None}
                  for key in ENTRY_MAPPINGS if isinstance(raw.get(key), dict)}


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merged key by key, anything else (lists, scalars, null) replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_suite_file(path: Path) -> dict:
    """The raw mapping of a suite file; anything else (a folder, an empty file, a list) is a clear error."""
    if path.is_dir():
        inside = sorted(path.glob("*.yaml"))
        example = f" (it holds {inside[0]}{' and more' if len(inside) > 1 else ''})" if inside else ""
        raise ConfigError(f"{path} is a folder, not a suite file{example}. Pass the path of one suite YAML, "
                          f"e.g. suites/toy_sim2real.yaml (see `udabench list suites`).")
    if not path.is_file():
        raise ConfigError(f"suite file {str(path)!r} does not exist. Pass the path of a suite YAML "
                          f"(see `udabench list suites`).")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) file; a suite is a YAML file like "
                          f"suites/toy_sim2real.yaml.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the suite file {path}: {exc.strerror or exc}. Check its permissions.") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path} is empty (no settings). A suite needs at least 'name' and 'data'; start from "
                          f"suites/toy_sim2real.yaml.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level is a {type(raw).__name__} ({show(raw)}), but a suite is a mapping "
                          f"of keys to values (name: ..., data: ..., train: ...); see suites/toy_sim2real.yaml.")
    return raw


class SuiteLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *defaults` may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.setdefault(key, key_node)
            except TypeError:   # an unhashable key: SafeLoader reports it
                continue
            if seen is not key_node:
                raise DuplicateKeyError(None, None, f"key {show(key)} is given twice in one mapping (first on line "
                                        f"{seen.start_mark.line + 1}), and YAML would silently keep the last one",
                                        key_node.start_mark)
        return super().construct_mapping(node, deep)


# YAML 1.2's floats that YAML 1.1, which PyYAML implements, reads as strings: an exponent without a dot or without a
# sign (1e-4, 1E-4, 1e3, 2.5e4) and a signed fraction without digits before the point (+.5). Numbers are numbers in
# suite files and --set values alike, as in YAML 1.2, OmegaConf and mmengine; PyYAML's own loaders are left alone.
SuiteLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+|\.[0-9]+)\Z"), list("-+.0123456789"))


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


def parse_yaml(text: str, source: str, fix: str = "Fix the syntax at the line shown.") -> Any:
    """``text`` parsed by ``SuiteLoader``; any problem is a ``ConfigError`` naming ``source`` and the line."""
    try:
        return yaml.load(text, SuiteLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or str(exc)
        if isinstance(exc, DuplicateKeyError):
            fix = "Remove one of them."
        elif "could not determine a constructor for the tag" in problem:
            fix = ("udabench reads YAML with a safe loader: tags that build Python objects (!!python/...) or "
                   "other custom tags are refused; write plain values (numbers, strings, lists, mappings).")
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}. {fix}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        # raised by PyYAML's constructors for a date like 2024-13-01, `!!int x`, an integer of over 4300
        # digits, or by its parser for thousands of nested brackets
        raise ConfigError(f"{source}: not valid YAML: {type(exc).__name__}: {exc}. {fix}") from None


def validate(suite: Suite) -> None:
    """Checks across settings; each setting's own range is declared on its field (``setting``)."""
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
    train = suite.train
    if train.source_warmup >= train.iterations:
        raise ConfigError(f"{src}: train.source_warmup ({train.source_warmup}) must be less than train.iterations "
                          f"({train.iterations}): otherwise no method ever adapts and every UDA row is Source-only. "
                          f"Lower train.source_warmup (e.g. to half the iterations) or set it to 0.")
    if train.poly_horizon is not None and train.poly_horizon < train.iterations:
        raise ConfigError(f"{src}: train.poly_horizon ({train.poly_horizon}) is less than train.iterations "
                          f"({train.iterations}): the poly LR would reach 0 before the last step and turn negative. "
                          f"Set it to at least the iterations (ADVENT: 250000 for 120000 steps), or leave it out.")
    if suite.augment.target.cat_max_ratio < 1:
        raise ConfigError(f"{src}: augment.target.cat_max_ratio is {suite.augment.target.cat_max_ratio}, but it "
                          f"re-draws a crop from its labels, and udabench never reads the target's training labels "
                          f"(nor does DAFormer/MIC: their Cityscapes crop has no cat_max_ratio). Set it on "
                          f"augment.source only.")
    if train.optimizer == "adamw" and train.param_listing != "unique":
        raise ConfigError(f"{src}: train.optimizer adamw with train.param_listing {train.param_listing!r}: the "
                          f"DeepLab lineage's repeated listing is a property of its SGD (engine/listing.py), and an "
                          f"AdamW lists each tensor once. Set train.param_listing: unique, or train.optimizer: sgd.")
    if train.warmup_iters >= train.iterations:
        raise ConfigError(f"{src}: train.warmup_iters ({train.warmup_iters}) must be less than train.iterations "
                          f"({train.iterations}): the LR would still be rising at the last step. Lower it (DAFormer: "
                          f"1500 of 40000) or set it to 0.")
    if suite.model.bn_eps == 0 and suite.model.bn_mode != "frozen":
        raise ConfigError(f"{src}: model.bn_eps is 0 with model.bn_mode {suite.model.bn_mode!r}: batch statistics of "
                          f"a constant channel have zero variance and the division gives inf. An epsilon of 0 is FADA's "
                          f"FrozenBatchNorm2d, i.e. bn_mode: frozen; otherwise keep the default 1e-5.")
    _validate_selection(suite, suite.report.selection, "report.selection")
    _validate_stages(suite)
    if suite.sweep:
        from .sweep import file_axes, merge_axes

        merge_axes(file_axes(suite.sweep, src), [], [])
    names, sets = CLASS_SETS[suite.classes].names, [suite.classes, *suite.eval_class_sets]
    for label, row in suite.references.items():
        for key, known in (("iou", names), ("miou", sets)):
            for bad in set(getattr(row, key)) - set(known):
                raise ConfigError(f"{src}: references.{label}.{key} has {bad!r}, which is not one of "
                                  f"{', '.join(known)}.{closest(bad, known)}")


STAGE_BLOCKS = ("train", "data", "model", "augment", "eval")   # the suite blocks a stage may change


def stage_suite(suite: Suite, method: str) -> Suite:
    """The suite as the runs of ``method`` see it: its ``stages.<method>`` blocks deep-merged over the suite's.

    A method that starts from another run's weights (``start_from``) or learns from a teacher has no source
    warm-up of its own (``train.source_warmup`` applies to methods that start from the init weights)."""
    stage = suite.stages.get(method)
    if stage is None:
        return suite
    raw = to_dict(suite)
    raw.pop("source_file")
    raw["stages"] = {}
    for block in STAGE_BLOCKS:
        raw[block] = deep_merge(raw[block], getattr(stage, block))
    if stage.start_from or stage.teacher:
        raw["train"]["source_warmup"] = 0
    where = f"{suite.source_file} (stages.{method})"
    merged = from_dict(Suite, raw, "", where)
    merged.source_file = where
    validate(merged)
    return merged


def _validate_stages(suite: Suite) -> None:
    src, methods = suite.source_file, suite.method_names()
    for name, stage in suite.stages.items():
        if name not in methods:
            raise ConfigError(f"{src}: stages.{name}: {name!r} is not one of the suite's methods "
                              f"({', '.join(methods)}).{closest(name, methods)} Add it to 'methods' or remove "
                              f"its stage.")
        for key in ("start_from", "teacher"):
            other = getattr(stage, key)
            if other and (other == name or other not in methods):
                why = "its own" if other == name else "not one of the suite's methods"
                verb = "starts from" if key == "start_from" else "learns from"
                raise ConfigError(f"{src}: stages.{name}.{key} is {other!r}, {why}; it names the method whose "
                                  f"finished run (same seed) this one {verb}: one of "
                                  f"{', '.join(m for m in methods if m != name)}.{closest(other, methods)}")
        if stage.start_from and stage.teacher:
            raise ConfigError(f"{src}: stages.{name} has both start_from and teacher; a student starts fresh from the "
                              f"init weights (FADA's self-distillation), so give one of them.")
        if stage.start_selection != "last":
            if not stage.start_from:
                raise ConfigError(f"{src}: stages.{name}.start_selection is {stage.start_selection!r} without "
                                  f"start_from; it picks the checkpoint of the run named by start_from.")
            _validate_selection(stage_suite(suite, stage.start_from), stage.start_selection,
                                f"stages.{name}.start_selection")
    for name in suite.stages:
        seen = [name]
        while (stage := suite.stages.get(seen[-1])) is not None and (stage.start_from or stage.teacher):
            seen.append(stage.start_from or stage.teacher)
            if seen[-1] in seen[:-1]:
                raise ConfigError(f"{src}: stages make a cycle: {' <- '.join(seen)}; each run needs the one before it "
                                  f"finished. Remove one start_from/teacher.")
        stage_suite(suite, name)   # each stage's settings, merged, must make a valid suite


# What each run's rows need for a selection protocol's field, and the setting that makes the runs record it.
RECORDED_BY = {"source_val_miou": ("data.source_val", lambda s: s.data.source_val is not None),
               "val_miou": ("eval.validation", lambda s: s.eval.validation is not None)}


def _validate_selection(suite: Suite, name: str, key: str) -> None:
    """``name`` is a selection protocol whose field the runs of ``suite`` record."""
    if name == "last":   # the default: nothing to import (the selections module imports pandas)
        return
    from .selection import SELECTIONS, suggest

    if name not in SELECTIONS:
        raise ConfigError(f"{suite.source_file}: {key} is {name!r}; known: {', '.join(SELECTIONS)}.{suggest(name)}")
    setting_name, records = RECORDED_BY.get(SELECTIONS[name].requires, ("", lambda s: True))
    if not records(suite):
        raise ConfigError(f"{suite.source_file}: {key} is {name!r}, which reads {SELECTIONS[name].requires!r}; runs "
                          f"record it only when {setting_name} is set. Set it, or pick another protocol.")


def apply_overrides(raw: Any, overrides: list[str], source: str, schema: type | None = None) -> dict:
    """Apply ``a.b=value`` strings (value parsed as YAML) to the raw mapping, returning a copy. With ``schema`` (the
    dataclass of the mapping), each key and value is checked against it first, a mistake named as ``--set ...``."""
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {item!r} must look like key.sub=value (e.g. train.iterations=100).")
        value = parse_yaml(text, f"override {item!r}", "The value is read as YAML: quote a string that contains "
                           "YAML syntax, e.g. --set 'name=\"[x]\"'.")
        removes_entry = value is None and len(parts) == 2 and parts[0] in ENTRY_MAPPINGS   # drop_removed_entries
        if schema is not None and not removes_entry:
            check_setting(schema, parts, value, f"--set {item}")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} in {source} is not a mapping.")
        node[parts[-1]] = value
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


def _quick_name(raw: dict, quick: bool, source: str) -> None:
    """``--quick``: the suite's name gains ``QUICK_SUFFIX``; a real suite may not end in it."""
    name = raw.get("name")
    if not isinstance(name, str):
        return   # from_dict says what is wrong
    if quick:
        raw["name"] = name + QUICK_SUFFIX
    elif name.endswith(QUICK_SUFFIX):
        raise ConfigError(f"{source}: the suite name {name!r}: the ending {QUICK_SUFFIX!r} is kept for --quick runs, "
                          f"whose results go to RESULTS/<name>{QUICK_SUFFIX}/, apart from real runs. Rename the suite.")


def _shrink_for_quick(suite: Suite) -> None:
    for ds in (suite.data.source, suite.data.target, suite.data.eval):
        ds.limit = min(ds.limit or QUICK_LIMIT, QUICK_LIMIT)
        ds.size = _quick_size(ds.size)
    for domain in (suite.augment.source, suite.augment.target):
        domain.crop = _quick_size(domain.crop)
    if suite.eval.validation is not None:
        suite.eval.validation.size = _quick_size(suite.eval.validation.size)
    suite.data.eval_batch_size = min(suite.data.eval_batch_size, 2)
    if suite.train.source_warmup:   # keep the shared warm-up in the smoke test: half of the few steps
        suite.train.source_warmup = suite.train.iterations // 2
    if suite.train.warmup_iters:    # and the LR warm-up, over half of them
        suite.train.warmup_iters = suite.train.iterations // 2
    suite.train.rcs_min_pixels = 0  # a few images: rare-class sampling draws among all that hold the class


def _quick_size(size):
    """A (W, H) at most ``QUICK_MAX_WIDTH`` wide, aspect kept (None stays None: native)."""
    if not size or size[0] <= QUICK_MAX_WIDTH:
        return size
    return (QUICK_MAX_WIDTH, max(MIN_SIZE, round(size[1] * QUICK_MAX_WIDTH / size[0])))


def _quick_stages(raw: dict) -> None:
    """``--quick`` inside each stage block of a raw suite: the quick schedule wins over a stage's own, and a
    stage's sizes, crops and limits shrink as the suite's do."""
    stages = raw.get("stages")
    if not isinstance(stages, dict):
        return
    for stage in stages.values():
        if not isinstance(stage, dict):
            continue
        train = stage.get("train")
        if isinstance(train, dict):
            for key in (*(k.split(".")[1] for k in QUICK_OVERRIDES), "poly_horizon", "source_warmup", "rcs_min_pixels"):
                train.pop(key, None)
            if train.get("warmup_iters"):   # a stage's own LR warm-up: over half the quick steps, as the suite's
                train["warmup_iters"] = QUICK_OVERRIDES["train.iterations"] // 2
        for blocks, key in ((stage.get("data"), "size"), (stage.get("augment"), "crop"), (stage.get("eval"), "size")):
            for entry in (blocks or {}).values() if isinstance(blocks, dict) else ():
                if isinstance(entry, dict) and isinstance(entry.get(key), list) and len(entry[key]) == 2 \
                        and all(isinstance(v, int) for v in entry[key]):
                    entry[key] = list(_quick_size(entry[key]))
                if isinstance(entry, dict) and key == "size" and isinstance(entry.get("limit"), int):
                    entry["limit"] = min(entry["limit"], QUICK_LIMIT)


def resolved_dict(suite: Suite) -> dict:
    data = to_dict(suite)
    data.pop("source_file")
    data.pop("references")   # published numbers: not part of any run's identity or config
    return data
