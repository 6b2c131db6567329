"""Evaluation-only runs: a model scored on a suite's eval split without training.

Ensembles (``ensemble.py``) and checkpoints scored by ``udabench eval`` write an ordinary run directory:
``config.yaml``, ``env.json``, one metrics row with the confusion matrix, the per-image matrices, ``done``.
``udabench eval`` needs the eval split only (no source or target copy, no init weights): the checkpoint
holds every tensor. Its rows carry ``"kind": "released"``, the checkpoint's path, format and SHA-256, and
the protocol of what the score depends on (network, input normalisation, eval options), not of a
training the checkpoint did not come from here. A released checkpoint is one trained model: its row is
seed 0, its step the training step the file records (0 where it records none).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import Suite, load_suite
from ..data import get_dataset, suite_datasets
from ..models import build_model
from ..models.released import convert_checkpoint, load_converted
from ..models.weights import resolve_input_norm
from ..vocabulary import Kind, Role
from .environment import collect_env
from .evaluate import Evaluation, evaluate, scores
from .identity import identity_of
from .predict import main_logits
from .rows import eval_protocol, metrics_row
from .rundir import RunDir


def score_eval_split(suite: Suite, forward, eval_set, device: torch.device) -> Evaluation:
    """One pass of ``forward`` over the eval split with the suite's evaluation options."""
    loader = DataLoader(eval_set, batch_size=suite.data.eval_batch_size, num_workers=suite.data.num_workers)
    return evaluate(forward, loader, suite.class_set.num_classes, device, contextlib.nullcontext, options=suite.eval)


def write_evaluation_run(suite: Suite, rundir: RunDir, evaluation: Evaluation, step: int, env: dict,
                         **fields) -> dict:
    """Write the run directory of one evaluation; ``fields`` are the row's own (``metrics_row``'s keywords)."""
    rundir.prepare(env)
    row = metrics_row(suite, run_id=rundir.id, step=step, scores=scores(suite, evaluation.cm, evaluation.entropy),
                      eval_file=rundir.save_eval(step, evaluation.per_image, evaluation.names), **fields)
    rundir.append_row(row)
    rundir.mark_done()
    return row


def eval_split(suite: Suite):
    """The suite's eval split alone, labels at ``eval.label_size``."""
    _, ds, resize_label = next(entry for entry in suite_datasets(suite) if entry[0] == "eval")
    return get_dataset(ds.dataset, ds.root, ds.split, size=ds.size, class_set=suite.classes,
                       resize_label=resize_label, limit=ds.limit, synthetic=suite.synthetic)


def evaluate_checkpoint(suite_file: str, checkpoint: str, fmt: str = "udabench", overrides=(),
                        results: str | Path = "results", device: torch.device = torch.device("cpu")) -> tuple[dict, bool]:
    """Score a checkpoint file on the suite's eval split; returns (its row, whether it was scored now).

    The format's settings (network, official evaluation options) come first, then ``overrides``, so
    ``--set`` can still change any of them. A checkpoint already scored with the same settings is not
    scored again.
    """
    converted = convert_checkpoint(checkpoint, fmt)
    suite = load_suite(suite_file, [*converted.overrides, *overrides])
    # the checkpoint holds every tensor: no init file is read, but its layout may have set the input
    model_cfg = replace(suite.model, pretrained="none", input_norm=resolve_input_norm(suite.model))
    suite = replace(suite, model=model_cfg)
    digest, stem = sha256(checkpoint), Path(checkpoint).stem
    name = "released-" + (re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-").lower() or "checkpoint")
    rundir = RunDir(results, suite.name, name, identity_of(suite, 0, released=Path(checkpoint).name, format=fmt,
                                                            sha256=digest))
    if rundir.status == "done" and rundir.rows():
        return rundir.rows()[-1], False
    model = build_model(model_cfg, suite.class_set.num_classes)
    load_converted(model, converted.state, checkpoint)
    model = model.to(device).eval()
    evaluation = score_eval_split(suite, main_logits(model), eval_split(suite), device)
    step = int(converted.step or 0)
    row = write_evaluation_run(suite, rundir, evaluation, step, collect_env(device), method=name,
                               method_label=f"{stem} (released, {fmt})", role=Role.UDA, seed=0, hparams={},
                               kind=Kind.RELEASED, iterations=step, checkpoint=str(checkpoint), format=fmt,
                               sha256=digest, row_protocol={**eval_protocol(suite), "checkpoint_format": fmt})
    return row, True


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
