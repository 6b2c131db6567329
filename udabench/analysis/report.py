"""``udabench report``: selected evaluation rows -> the tables of a paper, per suite, eval target and class set.

Published rows come from ``results/<suite>/references.yaml`` (written by ``udabench run``), else from the
suite file found by suite name in ``--suites-dir`` (``published.py``); they are shown beside the measured
rows, marked "paper [k]", and never averaged, ranked or in a gain.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..classes import SUBSET_NOTES
from ..config import ReferenceRow
from ..engine.rundir import REFERENCES
from ..errors import UdabenchError
from ..selection import Selection, get_selection, select
from ..vocabulary import RECIPE_SETTINGS, Kind, Role
from .codes import code_notes
from .configurations import label_notes
from .published import published
from .records import protocol_field
from .render import render
from .tables import miou_table, oracle_gap_table, paper_notes, per_class_table


def build_report(records: pd.DataFrame, fmt: str = "text", selection: str | None = "last", tables: bool = True,
                 compare: tuple[str, str] | None = None, suites_dir: str | Path = "suites") -> str:
    """The report text: tables (or a list of the selected runs) and the paired comparison, per suite.
    ``selection`` None: each suite's own default (``report.selection`` of its suite file, else ``last``)."""
    if selection is not None:
        get_selection(selection)   # an unknown name fails before anything is computed
    if compare:
        _check_compare(records, *compare)
    parts, compared = [], 0
    for suite, runs in records.groupby("suite", sort=True):
        name = selection or suite_selection(runs, suites_dir)
        sel, group = get_selection(name), select(runs, name)
        if tables:
            parts += _suite_tables(suite, group, sel, fmt, Path(suites_dir), code_notes(runs))
        elif not compare:
            listed = group[["label", "seed", "step", "miou"]]
            listed = listed.rename(columns={"label": "method", "miou": "mIoU"})
            which = "runs" if (group["kind"] == Kind.UNFINISHED).any() else "finished runs"
            parts.append(render(listed.set_index("method"), fmt, f"{suite}: {which}, selection: {sel.title}",
                                notes=sel.notes() + label_notes(group) + _unfinished_notes(group) + code_notes(runs)))
        if compare:   # seeds of finished runs only
            comparisons = _comparisons(suite, group[group["kind"] != Kind.UNFINISHED], compare, sel, fmt)
            parts += comparisons
            compared += len(comparisons)
    if compare and not compared:
        raise UdabenchError(f"--compare {compare[0]} {compare[1]}: no suite has finished runs of both methods; "
                            f"pass --suite, or run the missing method.")
    return "\n".join(parts)


def suite_selection(records: pd.DataFrame, suites_dir: str | Path) -> str:
    """The default selection of the suite of ``records`` (one suite's): its ``report.selection``, else ``last``."""
    return published(records["suite_dir"].iloc[0], records["suite"].iloc[0], suites_dir).selection or "last"


def _suite_tables(suite: str, group: pd.DataFrame, sel: Selection, fmt: str, suites_dir: Path,
                  code: list[str]) -> list[str]:
    """The tables of one suite; ``code``: the notes on its rows' code (of all their evaluations, not only the
    selected ones)."""
    references, ref_notes = _references(group["suite_dir"].iloc[0], suites_dir, suite, group)
    notes = (sel.notes() + label_notes(group) + _recipe_notes(group) + _ensemble_notes(group, sel)
             + _unfinished_notes(group) + code + ref_notes)
    targets = sorted(group["eval_target"].unique())
    class_sets = list(group["class_sets"].iloc[0])
    parts = []
    for target in targets:
        runs = group[group["eval_target"] == target]
        where = f" on {target}" if target else ""
        for class_set in class_sets:
            refs = [(label, r) for label, r in references if class_set in r.miou and r.eval in ("", target)]
            title = f"{suite}: per-class IoU (%), {class_set}{where}; selection: {sel.title}; mean ± std over seeds"
            parts.append(render(per_class_table(runs, class_set, refs, sel.marker), fmt, title,
                                notes=notes + paper_notes(refs), bold=True))
            if (runs["role"] == Role.UPPER_BOUND).any():
                title = f"{suite}: oracle gap (mIoU, {class_set}){where}; selection: {sel.title}"
                parts.append(render(oracle_gap_table(runs, class_set, sel.marker), fmt, title, notes=notes,
                                    bold=True))
    if len(targets) * len(class_sets) > 1:
        columns = _miou_columns(group, targets, class_sets)
        refs = [(label, r) for label, r in references
                if set(r.miou) & set(class_sets) and r.eval in ("", *targets)]
        title = f"{suite}: mIoU (%) per {'eval target' if len(targets) > 1 else 'class set'}; selection: {sel.title}"
        subset_notes = [SUBSET_NOTES[c] for c in class_sets if c in SUBSET_NOTES]
        parts.append(render(miou_table(group, columns, refs, sel.marker), fmt, title,
                            notes=notes + subset_notes + paper_notes(refs), bold=True))
    return parts


def _miou_columns(group: pd.DataFrame, targets: list[str], class_sets: list[str]) -> dict[str, tuple[str, str]]:
    sizes = {c: len(group["class_sets"].iloc[0][c]["iou"]) for c in class_sets}
    columns = {}
    for target in targets:
        for class_set in class_sets:
            words = [target] * (len(targets) > 1) + [f"mIoU{sizes[class_set]}"] * (len(class_sets) > 1)
            columns[" ".join(words)] = (target, class_set)
    return columns


def _comparisons(suite: str, group: pd.DataFrame, compare: tuple[str, str], sel: Selection, fmt: str) -> list[str]:
    from .compare import (
        paired_bootstrap,  # torch (the IoU of resampled matrices): tables alone start without it
    )

    parts = []
    for target, runs in group.groupby("eval_target", sort=True):
        if not set(compare) <= set(runs["method"]):
            continue
        result = paired_bootstrap(runs, *compare)
        a, b = result.table.columns[:2]
        where = f" on {target}" if target else ""
        title = (f"{suite}: paired comparison {a} vs {b}{where} (IoU %, delta = A - B, mean over seed pairs "
                 f"{', '.join(map(str, result.seeds))}); selection: {sel.title}")
        parts.append(render(result.table, fmt, title, notes=[*sel.notes(), *label_notes(runs), *result.notes]))
    return parts


def _check_compare(records: pd.DataFrame, a: str, b: str) -> None:
    known = sorted(records["method"].unique())
    for name in (a, b):
        if name not in known:
            raise UdabenchError(f"--compare: unknown method {name!r}; methods with finished runs: "
                                f"{', '.join(known)}.")
    if a == b:
        raise UdabenchError(f"--compare needs two different methods, got {a!r} twice.")


def _recipe_notes(group: pd.DataFrame) -> list[str]:
    """The official recipes' training settings that rows use away from udabench's protocol (``RECIPE_SETTINGS``)."""
    found = []
    for key, meaning in RECIPE_SETTINGS.items():
        values = sorted(set(protocol_field(group, key)) - {""})
        if values:
            found.append(f"{key} = {' / '.join(values)} ({meaning})")
    return [f"Training differs from udabench's protocol where an official recipe does: {'; '.join(found)}."] \
        if found else []


def _ensemble_notes(group: pd.DataFrame, sel: Selection) -> list[str]:
    ensembles = group[group["ensemble_of"].notna()] if "ensemble_of" in group else group.iloc[:0]
    members = {m or "last" for m in protocol_field(ensembles, "member_selection")}
    combine = {c or "mean_softmax" for c in protocol_field(ensembles, "combine")}
    if ensembles.empty or members == {sel.name} and combine == {"mean_softmax"}:
        return []
    which = "final models" if members == {"last"} else f"checkpoints selected by {' / '.join(sorted(members))}"
    return [f"Ensemble rows combine ({' / '.join(sorted(combine))}) their members' {which}, chosen when they were "
            f"scored; selection {sel.name!r} does not choose among them."]


STATUS = {"partial": "in progress or interrupted", "failed": "failed", "new": "no checkpoint yet"}


def _unfinished_notes(group: pd.DataFrame) -> list[str]:
    runs = group[group["kind"] == Kind.UNFINISHED].sort_values(["row_order", "seed"])
    if runs.empty:
        return []
    which = "; ".join(f"{r.label} seed {r.seed}: step {r.step} of {r.iterations}, "
                      f"{STATUS.get(r.run_status, r.run_status)}" for r in runs.itertuples())
    return [f"Rows marked unfinished (--include-running) are runs without a 'done' marker, at their latest evaluation "
            f"whatever the selection ({which}); they are not averaged with finished runs, ranked or given a gain."]


def _references(suite_dir: str, suites_dir: Path, suite: str,
                group: pd.DataFrame) -> tuple[list[tuple[str, ReferenceRow]], list[str]]:
    """The suite's published rows for the backbone(s) of its runs, and notes on what is not shown."""
    found = published(suite_dir, suite, suites_dir)
    if not found.found:
        return [], [f"Published rows not shown: no suite file named {suite!r} in {suites_dir}/ (--suites-dir) and "
                    f"no {Path(suite_dir) / REFERENCES} (which `udabench run` writes)."]
    references = list(found.references.items())
    backbones = set(protocol_field(group, "backbone")) - {""}
    shown = [(label, r) for label, r in references if not backbones or r.backbone in backbones]
    other = sorted({r.backbone for _, r in references} - backbones) if len(shown) < len(references) else []
    hidden = [f"{len(references) - len(shown)} published rows of other backbones ({', '.join(other)}) "
              f"not shown."] if other else []
    return shown, hidden
