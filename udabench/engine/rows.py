"""The metrics row: one self-describing JSON object per evaluation, the only thing reports read.

Every writer (the trainer, ensembles, scored released checkpoints, tests) builds its rows here, so a new
field is added once. A row says what it scores (suite, method, role, kind, seed, run id, step), the scores
of every class set from one confusion matrix, the protocol that produced them and the code (``code``: the method's
files and udabench's, ``provenance.py``).

``role`` says what a method is for in a table and ``kind`` where the numbers come from (``vocabulary.py``:
``Role``, ``Kind``).
"""

from __future__ import annotations

import time

from ..config import DomainAugment, Suite
from ..models.weights import resolve_input_norm
from ..provenance import udabench_code
from ..schema import to_dict
from ..vocabulary import PROTOCOL_DEFAULTS, Kind

# Measured times and memory of a row: they differ between two runs that are otherwise identical.
TIMING_FIELDS = ("step_time", "data_time", "compute_time", "images_per_s", "peak_mem_gb", "validator_seconds")


def metrics_row(suite: Suite, *, method: str, method_label: str, role: str, seed: int, run_id: str, step: int,
                scores: dict, hparams: dict, kind: str = Kind.MEASURED, world_size: int = 1,
                stages: list[dict] = (), row_protocol: dict | None = None, code: dict | None = None,
                **extra) -> dict:
    """The row of one evaluation; ``scores`` as ``evaluate.scores`` returns them, ``extra`` adds fields;
    ``stages``: the run's stage chain (``RunSpec.stages``), recorded in the protocol. ``row_protocol`` replaces
    the suite's training protocol where the model was not trained here (released). ``code``: the code that trained
    the run (``RunSpec.code``); udabench's alone where no method was trained (an ensemble, a released model)."""
    return {"suite": suite.name, "method": method, "method_label": method_label, "role": role, "kind": kind,
            "seed": seed, "run_id": run_id, "step": step, "iterations": suite.train.iterations, **scores,
            **extra, "hparams": hparams,
            "protocol": protocol(suite, seed, world_size, stages) if row_protocol is None else row_protocol,
            "code": udabench_code() if code is None else code, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def protocol(suite: Suite, seed: int, world_size: int = 1, stages: list[dict] = ()) -> dict:
    """Every suite choice that changes the numbers of a row (docs/protocol.md). Settings added later appear
    only when they are not at their default, so older rows and new ones of the same protocol read alike.

    ``world_size`` is the number of training processes (torchrun's); each reads ``train.batch_size`` images per
    domain and gradients are averaged over them, so one step sees ``effective_batch_size`` = world × batch."""
    m, d, t = suite.model, suite.data, suite.train
    later = {"poly_horizon": t.poly_horizon, "source_sampler": t.source_sampler, "augment": augment_record(suite),
             "stages": list(stages), "param_listing": t.param_listing, "train_align_corners": t.align_corners,
             "head_bias_init": m.head_bias_init, "bn_eps": m.bn_eps, "freeze_stem_bn": m.freeze_stem_bn,
             "optimizer": t.optimizer, "warmup_iters": t.warmup_iters,
             "warmup_ratio": t.warmup_ratio, "rcs_temperature": t.rcs_temperature,
             "rcs_min_pixels": t.rcs_min_pixels,
             "rcs_min_crop_ratio": t.rcs_min_crop_ratio if t.source_sampler == "rare_class" else None,
             "validators": to_dict(suite.validators)}   # the sample the validator_* fields were scored on
    return {
        "pretrained": m.pretrained, "bn_mode": m.bn_mode,
        "source": f"{d.source.dataset}/{d.source.split}", "target": f"{d.target.dataset}/{d.target.split}",
        "source_size": _size(d.source.size), "target_size": _size(d.target.size),
        **eval_protocol(suite), "iterations": t.iterations, "source_warmup": t.source_warmup,
        "batch_size": t.batch_size, "world_size": world_size, "effective_batch_size": world_size * t.batch_size,
        "amp": t.amp, "channels_last": m.channels_last, "compile": t.compile, "seed": seed,
        **{k: v for k, v in later.items() if v != PROTOCOL_DEFAULTS[k]},
    }


def eval_protocol(suite: Suite) -> dict:
    """What a score depends on besides training: the network, its input and the evaluation options."""
    m, d, e = suite.model, suite.data, suite.eval
    inference = f"single-scale, {'flip-averaged softmax' if e.flip else 'no flip'}, bilinear up-sampling of logits"
    return {
        "backbone": m.backbone, "input_norm": resolve_input_norm(m), "aspp_dilations": list(m.aspp_dilations),
        "multi_level": m.multi_level, "eval": f"{d.eval.dataset}/{d.eval.split}", "eval_input_size": _size(d.eval.size),
        "eval_label_size": e.label_size, "eval_flip": e.flip, "eval_align_corners": e.align_corners,
        "inference": inference + (" (align_corners)" if e.align_corners else ""), "classes": suite.classes,
        **({"eval_validation": to_dict(e.validation)} if e.validation is not None else {}),
    }


def augment_record(suite: Suite) -> dict:
    """The augmentation of each training domain that has any (e.g. {"source": {"flip": 0.5, "blur": 0.5}})."""
    default = to_dict(DomainAugment())
    record = {}
    for domain in ("source", "target"):
        changed = {k: v for k, v in to_dict(getattr(suite.augment, domain)).items() if v != default[k]}
        if changed:
            record[domain] = changed
    return record


def _size(size) -> str:
    return f"{size[0]}x{size[1]}" if size else "native"
