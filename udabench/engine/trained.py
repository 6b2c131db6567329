"""The trained models a run directory keeps: its final checkpoint, or the one a selection protocol picks.

A finished run's segmenter is built from the run's own suite (``RunDir.suite``) without its init file (the
checkpoint replaces every weight) and loaded from ``checkpoints/last.pt`` or ``checkpoints/selected-<name>.pt``
(kept as the run trained, ``Trainer._keep_selected``), whose step is checked against what the protocol picks among
the run's rows. Ensembles, teachers, stages that start from a selected checkpoint, exports and figures read them here.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .. import checkpoint
from ..errors import CheckpointError, UdabenchError
from ..models import build_model
from ..models.weights import resolve_input_norm
from ..selection import selected_step
from ..vocabulary import RunKind
from .rundir import RunDir


def final_model(rundir: RunDir, device, selection: str = "last") -> torch.nn.Module:
    """The segmentation model of the finished run ``rundir``, in eval mode: its final weights, or those of the
    evaluation ``selection`` picks (``load_selected``)."""
    if rundir.kind not in (RunKind.TRAINED, RunKind.WARMUP):
        raise UdabenchError(f"{rundir.path} has no model of its own (an ensemble or a released-checkpoint "
                            f"score); use its member runs instead.")
    if rundir.status != "done" or not rundir.checkpoint.is_file():
        raise UdabenchError(f"{rundir.path} has not finished (no 'done' marker or no {rundir.checkpoint}); "
                            f"finish it with `udabench run` first.")
    suite = rundir.suite()
    # the checkpoint replaces every weight: the init file need not exist here (it may have set the input)
    model_cfg = replace(suite.model, pretrained="none", input_norm=resolve_input_norm(suite.model))
    model = build_model(model_cfg, suite.class_set.num_classes)
    state = load_selected(rundir, selection, "cpu", fix="Re-run this method to recreate it.")
    model.load_state_dict(checkpoint.segmenter_state(state))
    return model.to(device).eval()


def load_selected(rundir: RunDir, selection: str, device, fix: str, purpose: str = "read checkpoint") -> dict:
    """The checkpoint ``rundir.selected_checkpoint(selection)``; for a kept one, checked to hold the step that
    ``selection`` picks among the run's rows (a ``CheckpointError`` otherwise)."""
    path = rundir.selected_checkpoint(selection)
    if selection != "last" and not path.is_file():
        raise CheckpointError(f"{rundir.path} kept no checkpoint selected by {selection!r} ({path}): runs keep one "
                              f"only for their suite's report.selection and the start_selection of the stages "
                              f"that start from them, and only of their own evaluations (not of a shared "
                              f"warm-up's). {fix}")
    state = checkpoint.load(path, device, fix, purpose)
    if selection != "last":
        picked = selected_step(rundir.rows(), selection, str(rundir.path))
        if state.get("step") != picked:
            raise CheckpointError(f"{path} holds step {state.get('step')}, but {selection!r} picks step {picked} "
                                  f"of {rundir.metrics}: the rows and the kept checkpoint disagree. {fix}")
    return state
