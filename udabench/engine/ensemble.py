"""Ensembles of trained runs, evaluated as their own table row.

ADVENT's "AdvEnt+MinEnt" (Table 1) is not joint training but two separately trained models whose
predictions are averaged (ADVENT issue #7). A suite declares ``ensembles: {"AdvEnt+MinEnt": [advent,
minent]}``; for each seed whose member runs are finished, the final models' softmaxes are averaged
with equal weights and scored with the usual protocol. The result is a run directory of its own
(no training, no checkpoint, written by ``evalrun.py``), identified by its members' run ids.
"""

from __future__ import annotations

import re
from dataclasses import asdict

import torch

from ..config import Suite
from ..errors import UdabenchError
from .evalrun import score_eval_split, write_evaluation_run
from .rundir import RunDir, identity_of
from .stages import RunSpec


def ensemble_rundir(suite: Suite, results, name: str, members: list[RunSpec], seed: int) -> RunDir:
    identity = identity_of(suite, seed, world_size=members[0].rundir.world_size, ensemble=name,
                           members=[m.rundir.id for m in members], member_methods=[m.method.name for m in members])
    return RunDir(results, suite.name, slug(name), identity)


def evaluate_ensemble(suite: Suite, name: str, members: list[RunSpec], rundir: RunDir, eval_set,
                      device: torch.device, env: dict) -> dict:
    missing = [m for m in members if m.rundir.status != "done"]
    if missing:
        raise UdabenchError(f"ensemble {name!r} needs finished runs of {', '.join(m.method.name for m in missing)} "
                            f"(seed {members[0].seed}); run those methods first.")
    models = [member.rundir.final_model(device) for member in members]

    def forward(image: torch.Tensor) -> torch.Tensor:
        prob = torch.stack([m(image).main.float().softmax(1) for m in models]).mean(0)
        return prob.clamp_min(1e-12).log()   # log of the mean softmax: argmax and entropy as for one model

    evaluation = score_eval_split(suite, forward, eval_set, device)
    return write_evaluation_run(suite, rundir, evaluation, suite.train.iterations, env,   # the members' final step
                                method=slug(name), method_label=name, role="uda", seed=members[0].seed,
                                hparams={m.method.name: asdict(m.hparams) for m in members},  # tells variants apart
                                ensemble_of=[m.rundir.id for m in members], world_size=members[0].rundir.world_size)


def slug(name: str) -> str:
    return "ensemble-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
