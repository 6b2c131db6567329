"""Ensembles of trained runs, evaluated as their own table row.

ADVENT's "AdvEnt+MinEnt" (Table 1) is not joint training but two separately trained models whose
predictions are averaged (ADVENT issue #7). A suite declares ``ensembles: {"AdvEnt+MinEnt": [advent,
minent]}``; for each seed whose member runs are finished, the members' models are combined with equal weights
(``ensemble_combine``: the mean of their softmaxes, udabench's; or of their logits, ADVENT's
``eval_UDA.py:54-63`` sum of 0.5 × up-sampled logits, up-sampling being linear) and scored with the usual
protocol. Each member is its checkpoint that the suite's ``report.selection`` picks (its final one under
``last``; ADVENT combined its two best snapshots, ``advent+minent_pretrained.yml:14-15``). The result is a run
directory of its own (no training, no checkpoint, written by ``evalrun.py``), identified by its members' run ids
and, away from the defaults, the member selection and the combination.
"""

from __future__ import annotations

import re
from dataclasses import asdict

import torch

from ..config import Suite
from ..errors import UdabenchError
from ..vocabulary import Role
from .evalrun import score_eval_split, write_evaluation_run
from .identity import identity_of
from .predict import main_logits
from .rows import protocol
from .rundir import RunDir
from .stages import RunSpec
from .trained import final_model


def ensemble_rundir(suite: Suite, results, name: str, members: list[RunSpec], seed: int) -> RunDir:
    identity = identity_of(suite, seed, world_size=members[0].rundir.world_size, ensemble=name,
                           members=[m.rundir.id for m in members], member_methods=[m.method.name for m in members],
                           **combination(suite))
    return RunDir(results, suite.name, slug(name), identity)


def combination(suite: Suite) -> dict:
    """How the suite's ensembles combine their members, where it is not udabench's default (final models, mean
    softmax): part of an ensemble's identity and of its row's protocol."""
    return ({"member_selection": suite.report.selection} if suite.report.selection != "last" else {}) | \
        ({"combine": suite.ensemble_combine} if suite.ensemble_combine != "mean_softmax" else {})


def evaluate_ensemble(suite: Suite, name: str, members: list[RunSpec], rundir: RunDir, eval_set,
                      device: torch.device, env: dict) -> dict:
    missing = [m for m in members if m.rundir.status != "done"]
    if missing:
        raise UdabenchError(f"ensemble {name!r} needs finished runs of {', '.join(m.method.name for m in missing)} "
                            f"(seed {members[0].seed}); run those methods first.")
    models = [final_model(member.rundir, device, suite.report.selection) for member in members]

    def forward(image: torch.Tensor) -> torch.Tensor:
        logits = [main_logits(m)(image).float() for m in models]
        if suite.ensemble_combine == "mean_logits":
            return torch.stack(logits).mean(0)
        prob = torch.stack([x.softmax(1) for x in logits]).mean(0)
        return prob.clamp_min(1e-12).log()   # log of the mean softmax: argmax and entropy as for one model

    evaluation = score_eval_split(suite, forward, eval_set, device)
    seed, ws = members[0].seed, members[0].rundir.world_size
    return write_evaluation_run(suite, rundir, evaluation, suite.train.iterations, env,   # the members' final step
                                method=slug(name), method_label=name, role=Role.UDA, seed=seed,
                                hparams={m.method.name: asdict(m.hparams) for m in members},  # tells variants apart
                                ensemble_of=[m.rundir.id for m in members], world_size=ws,
                                row_protocol=protocol(suite, seed, ws) | combination(suite))


def slug(name: str) -> str:
    return "ensemble-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
