"""Report tables (ADVENT Tables 1–2 layout) as plain DataFrames, rendered by ``render.py``.

One row per configuration (``configurations.py``), in table order, then the published rows. A value
column ``c`` carries ``c std`` (sample std over seeds, ddof=1: NaN for one seed) and ``c n`` (seeds with a
value); ``seeds`` counts a row's runs and ``source`` says what the row is ("measured", "measured, target
labels", "released checkpoint", "unfinished run: latest eval", "paper [k]"). The ``role`` and ``kind``
columns are the row's data for the renderers (ranking, rules); published rows and unfinished runs are never
averaged with measured ones, ranked or in a gain.
"""

from __future__ import annotations

import pandas as pd

from ..vocabulary import Kind, Role
from .render import ROW_FACTS, STD, N, is_count

SOURCE = {Kind.MEASURED: "measured", Kind.RELEASED: "released checkpoint",
          Kind.UNFINISHED: "unfinished run: latest eval"}
BOUND_SOURCE = "measured, target labels"      # the upper bound's source cell: not ranked against UDA methods


def per_class_table(selected: pd.DataFrame, class_set: str, references=(), marker: str = "") -> pd.DataFrame:
    """Rows = configurations in table order, then ``references``; columns = class IoUs, mIoU, gain.

    ``references`` are ``(label, ReferenceRow)`` pairs, numbered [1], [2]... in the source column (see
    ``paper_notes``); ``marker`` is appended to the measured rows' source (the leaking-selection flag).
    Gain = a row's mean mIoU minus that of the lower-bound row (Source-only) of the same suite settings,
    under the same selection; rows without one (and released and published rows) have none.
    """
    def values(group):
        scores = [r[class_set] for r in group["class_sets"]]
        return pd.DataFrame([{**s["iou"], "mIoU": s["miou"]} for s in scores], dtype=float)

    classes = list(selected["class_sets"].iloc[0][class_set]["iou"])
    rows = _run_rows(selected, values, marker) + _paper_rows(
        references, lambda ref: {**{c: ref.iou.get(c) for c in classes}, "mIoU": ref.miou.get(class_set)})
    table = _frame(rows)
    if _has_role(selected, Role.LOWER_BOUND):
        baseline = matching(selected, Role.LOWER_BOUND)
        gain = pd.Series({row: table.loc[row, "mIoU"] - table.loc[base, "mIoU"] for row, base in baseline.items()},
                         dtype=float)
        table.insert(table.columns.get_loc("seeds"), "gain", gain.reindex(table.index))
    return table


def oracle_gap_table(selected: pd.DataFrame, class_set: str, marker: str = "") -> pd.DataFrame:
    """Measured rows' mIoU, the mIoU of the upper bound (oracle) of the same suite settings and the gap
    (oracle - row), means over seeds; the upper bounds' own rows are left out."""
    table = per_class_table(selected, class_set, marker=marker)
    oracle = matching(selected, Role.UPPER_BOUND)
    rows = table[table["kind"].eq(Kind.MEASURED) & ~table["role"].eq(Role.UPPER_BOUND)]
    gap = rows[["source", "mIoU", "mIoU" + STD, "mIoU" + N]].copy()
    for suffix in ("", STD, N):
        column = table["mIoU" + suffix]
        gap["oracle mIoU" + suffix] = [column.get(oracle.get(row)) for row in gap.index]
    gap["gap"] = pd.to_numeric(gap["oracle mIoU"]) - gap["mIoU"]
    gap[["seeds", *ROW_FACTS]] = rows[["seeds", *ROW_FACTS]]
    return _counts_as_int(gap)


def miou_table(selected: pd.DataFrame, columns: dict[str, tuple[str, str]], references=(),
               marker: str = "") -> pd.DataFrame:
    """mIoUs side by side: ``columns`` maps a column label to (eval target, class set).

    The class-subset view (SYNTHIA mIoU16 and mIoU13) and the per-city view of a cross-city suite. A
    reference fills the columns of its class sets on its eval target (every target when it names none).
    """
    def values(group):
        scores = {col: [r[cs]["miou"] for r in group.loc[group["eval_target"] == target, "class_sets"]]
                  for col, (target, cs) in columns.items()}
        return pd.DataFrame({col: pd.Series(v, dtype=float) for col, v in scores.items()})

    def published(ref):
        return {col: ref.miou.get(cs) if ref.eval in ("", target) else None for col, (target, cs) in columns.items()}

    return _frame(_run_rows(selected, values, marker) + _paper_rows(references, published))


def paper_notes(references) -> list[str]:
    """The footnotes that the [k] of ``per_class_table``/``miou_table`` source cells point to."""
    return [f"[{k}] {ref.source}" for k, (_, ref) in enumerate(references, 1)]


def ordered_groups(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(config, its rows) of every configuration in ``frame`` (records columns), in table order."""
    return list(frame.sort_values("row_order", kind="stable").groupby("config", sort=False))


def matching(selected: pd.DataFrame, role: str) -> dict[str, str]:
    """Label of each measured row -> label of the measured ``role`` row with the same suite settings.

    A row gets one only when exactly one such row exists; the ``role`` rows themselves get none.
    """
    configs = selected[selected["kind"] == Kind.MEASURED].drop_duplicates("config")
    bounds = configs[configs["role"] == role].groupby("suite_key")["label"].agg(list)
    return {row.label: bounds[row.suite_key][0] for row in configs.itertuples()
            if row.role != role and len(bounds.get(row.suite_key, [])) == 1}


def _has_role(selected: pd.DataFrame, role: str) -> bool:
    return bool((selected["kind"].eq(Kind.MEASURED) & selected["role"].eq(role)).any())


def _run_rows(selected: pd.DataFrame, values, marker: str) -> list[dict]:
    """One row per configuration: mean/std/n of ``values(its runs)`` (runs × columns); ``seeds`` is the
    most runs behind one cell."""
    rows = []
    for _, group in ordered_groups(selected):
        first = group.iloc[0]
        stats = _stats(values(group))
        if first["kind"] == Kind.MEASURED:
            source = (BOUND_SOURCE if first["role"] == Role.UPPER_BOUND else SOURCE[Kind.MEASURED]) + marker
        else:
            source = SOURCE.get(first["kind"], first["kind"])
        rows.append({"method": first["label"], "source": source, **stats,
                     "seeds": max(n for c, n in stats.items() if c.endswith(N)),
                     "role": first["role"], "kind": first["kind"]})
    return rows


def _paper_rows(references, cells) -> list[dict]:
    """``(label, ReferenceRow)`` pairs as rows "paper [k]", ``cells(ref)`` giving the published values."""
    return [{"method": label, "source": f"paper [{k}]", **cells(ref), "kind": Kind.PAPER}
            for k, (label, ref) in enumerate(references, 1)]


def _stats(values: pd.DataFrame) -> dict:
    """Mean, sample std (ddof=1) and count of each column over seeds, NaNs (absent classes) left out."""
    out = {}
    for col in values:
        out |= {col: values[col].mean(), col + STD: values[col].std(ddof=1), col + N: int(values[col].count())}
    return out


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows).set_index("method")
    last = ["seeds", *ROW_FACTS]
    table = table.reindex(columns=[c for c in table.columns if c not in last] + last)
    return _counts_as_int(table)


def _counts_as_int(table: pd.DataFrame) -> pd.DataFrame:
    """Seed counts as nullable integers: published rows have none."""
    return table.astype({c: "Int64" for c in table.columns if is_count(c)})
