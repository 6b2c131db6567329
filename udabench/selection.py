"""Checkpoint selection protocols: which evaluation row of a run is reported (DomainBed's model_selection).

A protocol is a named reducer from the rows of one run to the chosen row. Papers differ mostly here
(the UDA anchors picked the best snapshot on target labels), so the name travels into every title,
and a protocol that reads target labels is flagged wherever its numbers are shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import UdabenchError
from .schema import closest

if TYPE_CHECKING:   # pandas is read only where rows are: listing the protocols (``--help``) needs none of it
    import pandas as pd

LEAK_MARK = "‡"   # not †: the papers' own tables use it (e.g. MaxSquare's "reproduced")


@dataclass(frozen=True)
class Selection:
    name: str
    reduce: Callable[[pd.DataFrame], pd.Series]   # one run's rows, latest step first -> the chosen row
    description: str
    requires: str = "step"                        # the row field the reducer reads
    missing: str = ""                             # how to get that field when rows lack it
    leaks_target_labels: bool = False

    @property
    def title(self) -> str:
        return f"{self.name} {LEAK_MARK} (LEAKS TARGET LABELS)" if self.leaks_target_labels else self.name

    @property
    def marker(self) -> str:
        """Appended to every measured row's source cell."""
        return f" {LEAK_MARK}" if self.leaks_target_labels else ""

    def notes(self) -> list[str]:
        if not self.leaks_target_labels:
            return []
        return [f"{LEAK_MARK} {self.name}: each run's checkpoint is the one with the {self.description}. This "
                f"leaks target labels (the papers' common practice); it is not an unsupervised result."]


SELECTIONS: dict[str, Selection] = {}


def register(name: str, description: str, **kw):
    """Decorator: register ``fn(run_rows) -> row`` as the selection protocol ``name``."""
    def wrap(fn):
        SELECTIONS[name] = Selection(name, fn, description, **kw)
        return fn
    return wrap


@register("last", "the final evaluation of each run (no label used; the default)")
def _last(run: pd.DataFrame) -> pd.Series:
    return run.iloc[0]


@register("source-val", "best mIoU on the held-out labelled source split (no target label used)",
          requires="source_val_miou",
          missing="Selection 'source-val' needs the mIoU on a held-out labelled source split, which runs record "
                  "only when their suite sets data.source_val (a dataset entry like data.eval, naming labelled source "
                  "images kept out of training). Add it to the suite and re-run, or pick another protocol "
                  "(--selection last).")
def _source_val(run: pd.DataFrame) -> pd.Series:
    return run.loc[run["source_val_miou"].idxmax()]


@register("target-entropy", "label-free: lowest mean prediction entropy on the target eval images",
          requires="target_entropy",
          missing="Selection 'target-entropy' needs the mean target prediction entropy of each evaluation "
                  "(target_entropy), which these rows lack; re-run them with this udabench version.")
def _target_entropy(run: pd.DataFrame) -> pd.Series:
    return run.loc[run["target_entropy"].idxmin()]


@register("oracle-target-val", "best mIoU on the target eval labels",
          requires="miou", leaks_target_labels=True)
def _oracle_target_val(run: pd.DataFrame) -> pd.Series:
    return run.loc[run["miou"].idxmax()]


@register("oracle-in-training-val", "best mIoU of the official in-training validation on the target eval labels "
          "(eval.validation: the official code's <id>best.pth)",
          requires="val_miou", leaks_target_labels=True,
          missing="Selection 'oracle-in-training-val' needs the mIoU of the in-training validation (val_miou), which "
                  "runs record only when their suite sets eval.validation; set it and re-run, or pick another protocol.")
def _oracle_in_training_val(run: pd.DataFrame) -> pd.Series:
    return run.loc[run["val_miou"].idxmax()]


def _register_validators() -> None:
    """One protocol per label-free validator of the rows (udabench/validators.py): its best evaluation of a run."""
    from .validators import VALIDATORS

    for v in VALIDATORS.values():
        if v.selection in SELECTIONS:   # source-val: registered above, with its own hint
            continue
        best = "highest" if v.higher_is_better else "lowest"
        missing = (f"Selection {v.selection!r} needs the validator {v.field!r} at every evaluation, which these rows "
                   f"lack: runs record the validators since udabench scored them at every evaluation "
                   f"(validators.images > 0)" + ("; the discriminator's accuracy only for methods with a domain "
                                                 "discriminator (AdvEnt, FADA)" if v.field == "validator_disc_acc"
                                                 else "") + ". Re-run them, or pick another protocol.")
        register(v.selection, f"label-free: {best} {v.description}",
                 requires=v.field, missing=missing)(_by(v.field, v.higher_is_better))


def _by(field: str, higher: bool) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda run: run.loc[run[field].idxmax() if higher else run[field].idxmin()]


_register_validators()


def get_selection(name: str) -> Selection:
    try:
        return SELECTIONS[name]
    except KeyError:
        known = "; ".join(f"{s.name}: {s.description}{' (leaks target labels)' * s.leaks_target_labels}"
                          for s in SELECTIONS.values())
        raise UdabenchError(f"unknown selection protocol {name!r}.{suggest(name)} Known: {known}.") from None


def suggest(name: str) -> str:
    """" Did you mean ...?" for an unknown protocol name: the protocols whose description uses the word given
    (``best``: those that pick a best score, not ``last``, the closest spelling), else the closest name."""
    described = [f"{s.name!r}" for s in SELECTIONS.values() if name.lower() in re.findall(r"[\w-]+", s.description)]
    if not described:
        return closest(name, SELECTIONS)
    listed = described[0] if len(described) == 1 else f"{', '.join(described[:-1])} or {described[-1]}"
    return f" Did you mean {listed} (described as {name.lower()!r})?"


def adaptation_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The evaluations a selection chooses among: each run's own, and the one it starts from. A run that continues
    the shared source warm-up carries the warm-up's rows (``warmup_from``); those before the warm-up's last
    evaluation are the Source-only training every method shares, not checkpoints of this run's adaptation."""
    if "warmup_from" not in records:
        return records
    copied = records["warmup_from"].notna()
    start = records["step"].where(copied).groupby(records["run_dir"]).transform("max")
    return records[~copied | (records["step"] >= start)]


def select(records: pd.DataFrame, name: str = "last") -> pd.DataFrame:
    """One row per run (``run_dir`` of ``load_records``): the row protocol ``name`` chooses among its evaluations
    (``adaptation_rows``: from the adaptation's start on).

    The reducer sees the run's rows latest step first, so ties go to the later checkpoint. A run with a
    single evaluation (e.g. an ensemble) has nothing to choose from and keeps it whatever the protocol.
    Rows keep the order of ``records``.
    """
    selection = get_selection(name)
    chosen = []
    for run_dir, run in adaptation_rows(records).sort_values("step", ascending=False, kind="stable").groupby("run_dir"):
        if len(run) == 1:
            chosen.append(run.index[0])
            continue
        _check_field(run, run_dir, selection)
        chosen.append(selection.reduce(run).name)
    return records.loc[sorted(chosen)].reset_index(drop=True)


def selected_step(rows: list[dict], name: str, where: str = "") -> int:
    """The step whose evaluation protocol ``name`` picks among one run's ``rows`` (as ``select`` would)."""
    import pandas as pd

    return int(select(pd.DataFrame(rows).assign(run_dir=where), name)["step"].iloc[0])


def _check_field(run: pd.DataFrame, run_dir: str, selection: Selection) -> None:
    field = selection.requires
    if field not in run or run[field].isna().any():
        raise UdabenchError(f"{selection.missing or f'Selection {selection.name!r} reads {field!r}.'} "
                            f"(Rows of {run_dir} lack it.)")
