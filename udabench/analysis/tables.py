"""Report tables (ADVENT Tables 1–2 layout) as plain DataFrames, and their renderings.

A table is a DataFrame indexed by row label. A value column ``c`` may carry companions ``c std``
(sample std over seeds, ddof=1: NaN for one seed) and ``c n`` (seeds with a value); ``seeds`` counts a
row's runs and ``source`` says "measured" or "paper [k]". CSV writes the frame as it is (every number a
column of its own); text, Markdown and LaTeX fold the companions into "mean ± std" cells and can bold
the best measured cell of each column. Published rows are never averaged with measured ones nor ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

ORACLE = "oracle"
SOURCE_ONLY = "source_only"
MEASURED = "measured"
BOUND = "measured, target labels"     # the oracle: an upper bound, not ranked against UDA methods
PAPER = "paper"
STD, N = " std", " n"
LOWER_IS_BETTER = {"gap"}
UNRANKED = {"oracle mIoU"}
SIGNED = {"gain", "delta", "CI low", "CI high"}


def per_class_table(selected: pd.DataFrame, class_set: str, references=(), marker: str = "") -> pd.DataFrame:
    """Rows = methods (Source-only first, Oracle last) then ``references``, columns = class IoUs, mIoU, gain.

    ``references`` are ``(label, ReferenceRow)`` pairs, numbered [1], [2]... in the source column (see
    ``paper_notes``); ``marker`` is appended to the measured rows' source (the leaking-selection flag).
    Gain = a method's mean mIoU minus Source-only's, both under the same selection.
    """
    def values(group):
        scores = [r[class_set] for r in group["class_sets"]]
        return pd.DataFrame([{**s["iou"], "mIoU": s["miou"]} for s in scores], dtype=float)

    classes = list(selected["class_sets"].iloc[0][class_set]["iou"])
    rows = _measured_rows(selected, values, marker) + _paper_rows(
        references, lambda ref: {**{c: ref.iou.get(c) for c in classes}, "mIoU": ref.miou.get(class_set)})
    table = _frame(rows)
    source_only = selected.loc[selected["method"] == SOURCE_ONLY, "method_label"]
    if len(source_only):
        baseline = source_only.iloc[0]
        gain = (table["mIoU"] - table.loc[baseline, "mIoU"]).where(_measured(table) & (table.index != baseline))
        table.insert(table.columns.get_loc("seeds"), "gain", gain)
    return table


def oracle_gap_table(selected: pd.DataFrame, class_set: str, marker: str = "") -> pd.DataFrame:
    """Method mIoU, oracle mIoU and the gap (oracle - method), means over seeds; the oracle's own row dropped."""
    table = per_class_table(selected, class_set, marker=marker)
    oracle_rows = selected[selected["method"] == ORACLE]
    oracle_label = oracle_rows["method_label"].iloc[0] if len(oracle_rows) else None
    gap = table[["source", "mIoU", "mIoU" + STD, "mIoU" + N]].copy()
    for suffix in ("", STD, N):
        gap["oracle mIoU" + suffix] = table.loc[oracle_label, "mIoU" + suffix] if oracle_label else math.nan
    gap["gap"] = gap["oracle mIoU"] - gap["mIoU"]
    gap["seeds"] = table["seeds"]
    return _counts_as_int(gap.drop(index=oracle_label) if oracle_label else gap)


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

    return _frame(_measured_rows(selected, values, marker) + _paper_rows(references, published))


def paper_notes(references) -> list[str]:
    """The footnotes that the [k] of ``per_class_table``/``miou_table`` source cells point to."""
    return [f"[{k}] {ref.source}" for k, (_, ref) in enumerate(references, 1)]


def _measured_rows(selected: pd.DataFrame, values, marker: str) -> list[dict]:
    """One row per method: mean/std/n of ``values(runs of the method)`` (runs × columns); ``seeds`` is the
    most runs behind one cell."""
    rows = []
    for method, group in ordered_groups(selected):
        stats = _stats(values(group))
        source = (BOUND if method == ORACLE else MEASURED) + marker
        rows.append({"method": group["method_label"].iloc[0], "source": source, **stats,
                     "seeds": max(n for c, n in stats.items() if c.endswith(N))})
    return rows


def _paper_rows(references, cells) -> list[dict]:
    """``(label, ReferenceRow)`` pairs as rows "paper [k]", ``cells(ref)`` giving the published values."""
    return [{"method": label, "source": f"{PAPER} [{k}]", **cells(ref)} for k, (label, ref) in enumerate(references, 1)]


def _stats(values: pd.DataFrame) -> dict:
    """Mean, sample std (ddof=1) and count of each column over seeds, NaNs (absent classes) left out."""
    out = {}
    for col in values:
        out |= {col: values[col].mean(), col + STD: values[col].std(ddof=1), col + N: int(values[col].count())}
    return out


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows).set_index("method")
    table = table[[c for c in table.columns if c != "seeds"] + ["seeds"]]
    return _counts_as_int(table)


def _counts_as_int(table: pd.DataFrame) -> pd.DataFrame:
    """Seed counts as nullable integers: published rows have none."""
    counts = [c for c in table.columns if _is_count(c)]
    return table.astype({c: "Int64" for c in counts})


def _is_count(col: str) -> bool:
    return col == "seeds" or col.endswith(N)


def ordered_groups(selected: pd.DataFrame):
    groups = dict(tuple(selected.groupby("method", sort=False)))
    order = sorted(groups, key=lambda m: (m != SOURCE_ONLY, m == ORACLE, m))
    return [(m, groups[m]) for m in order]


# --- rendering -------------------------------------------------------------------------------------

def render(table: pd.DataFrame, fmt: str, title: str = "", digits: int = 1, notes=(), bold: bool = False) -> str:
    """``table`` as text, md, csv or latex; ``notes`` go under it (CSV: ``#`` lines above the header).

    ``bold`` marks the best measured cell of every ranked column (max; min for the gap).
    """
    if fmt == "csv":
        comments = "".join(f"# {line}\n" for line in [title, *notes] if line)
        return comments + table.to_csv(float_format=f"%.{digits + 1}f")
    if fmt not in _FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    shown = [c for c in table.columns if not _is_companion(c, table)]
    best = _best(table, shown, digits) if bold else pd.DataFrame(False, table.index, shown)
    if best.to_numpy().any():
        notes = [*notes, f"{'*' if fmt == 'text' else 'Bold'}: best measured value of each column "
                         f"(published rows are not ranked)."]
    cells = [[_cell(table, i, c, digits) for c in shown] for i in range(len(table))]
    layout = _Layout(header=[table.index.name or "", *map(str, shown)],
                     text_columns=[True, *(_is_text(table[c]) for c in shown)],
                     rows=[[str(label), *row] for label, row in zip(table.index, cells)],
                     strong=[[False, *row] for row in best.to_numpy().tolist()],
                     papers_from=_papers_from(table))
    return _FORMATS[fmt](layout, title, list(notes))


@dataclass
class _Layout:
    header: list[str]
    text_columns: list[bool]          # left-aligned
    rows: list[list[str]]
    strong: list[list[bool]]          # best in column
    papers_from: int | None           # row index where published rows start after measured ones

    def decorated(self, mark, plain=str) -> list[list[str]]:
        return [[mark(c) if s else plain(c) for c, s in zip(row, strong)]
                for row, strong in zip(self.rows, self.strong)]


def _text(layout: _Layout, title: str, notes: list[str]) -> str:
    rows = layout.decorated(lambda c: c + "*")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(layout.header)]

    def line(r):
        return "  ".join(c.ljust(w) if left else c.rjust(w) for c, w, left in zip(r, widths, layout.text_columns))

    rule = "  ".join("-" * w for w in widths)
    body = [line(r) for r in rows]
    if layout.papers_from:
        body.insert(layout.papers_from, rule)
    return "\n".join([*([title] if title else []), line(layout.header), rule, *body, *notes]) + "\n"


def _markdown(layout: _Layout, title: str, notes: list[str]) -> str:
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(layout.header) + " |",
              "|" + "|".join("---" if left else "---:" for left in layout.text_columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in layout.decorated(lambda c: f"**{c}**")]
    lines += [""] + [f"- {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"


_LATEX = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                        "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$"})


def _latex(layout: _Layout, title: str, notes: list[str]) -> str:
    def esc(s):
        return s.translate(_LATEX)

    body = [" & ".join(r) + r" \\" for r in layout.decorated(lambda c: rf"\textbf{{{esc(c)}}}", esc)]
    if layout.papers_from:
        body.insert(layout.papers_from, r"\midrule")
    lines = [r"\begin{table}[t]", r"\centering", *([rf"\caption{{{esc(title)}}}"] if title else []),
             r"\begin{tabular}{" + "".join("l" if left else "r" for left in layout.text_columns) + "}",
             r"\toprule", " & ".join(map(esc, layout.header)) + r" \\", r"\midrule", *body, r"\bottomrule",
             r"\end{tabular}", *(rf"\par{{\footnotesize {esc(note)}}}" for note in notes), r"\end{table}"]
    return "\n".join(lines) + "\n"


_FORMATS = {"text": _text, "md": _markdown, "latex": _latex}


def _is_companion(col: str, table: pd.DataFrame) -> bool:
    return any(col.endswith(s) and col[: -len(s)] in table.columns for s in (STD, N))


def _sources(table: pd.DataFrame) -> pd.Series:
    return table["source"].astype(str) if "source" in table else pd.Series(MEASURED, table.index)


def _measured(table: pd.DataFrame) -> np.ndarray:
    return ~_sources(table).str.startswith(PAPER).to_numpy()


def _papers_from(table: pd.DataFrame) -> int | None:
    measured = _measured(table)
    if measured.all() or not measured.any():
        return None
    first = int(np.argmin(measured))
    return None if measured[first:].any() else first


def _best(table: pd.DataFrame, shown: list[str], digits: int) -> pd.DataFrame:
    """Best measured UDA cell of each ranked column, compared as printed (equal printed values tie)."""
    best = pd.DataFrame(False, table.index, shown)
    source = _sources(table)
    ranked = (source.str.startswith(MEASURED) & ~source.str.startswith(BOUND)).to_numpy()
    for col in shown:
        if col in UNRANKED or _is_count(col) or _is_text(table[col]):
            continue
        values = pd.to_numeric(table[col], errors="coerce").where(ranked).round(digits)
        if values.count() < 2:
            continue
        target = values.min() if col in LOWER_IS_BETTER else values.max()
        best[col] = (values == target).to_numpy()
    return best


def _is_text(column: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(column)


def _cell(table: pd.DataFrame, i: int, col: str, digits: int) -> str:
    value = table[col].iloc[i]
    if isinstance(value, str):
        return value
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "-"
    if not isinstance(value, (float, np.floating)):
        return str(value)
    text = f"{value:+.{digits}f}" if col in SIGNED else f"{value:.{digits}f}"
    std = table[col + STD].iloc[i] if col + STD in table else math.nan
    if not pd.isna(std):
        text += f" ± {std:.{digits}f}"
    n = table[col + N].iloc[i] if col + N in table else pd.NA
    if "seeds" in table and not pd.isna(n) and not pd.isna(table["seeds"].iloc[i]) and n < table["seeds"].iloc[i]:
        text += f" [n={n}]"
    return text
