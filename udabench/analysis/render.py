"""Tables as text, Markdown, CSV, LaTeX or HTML, from one layout.

A table is a DataFrame indexed by row label. A value column ``c`` may carry companions ``c std`` (sample
std over seeds) and ``c n`` (seeds with a value); ``seeds`` counts a row's runs. CSV writes the frame as
it is (every number a column of its own); the other formats fold the companions into "mean ± std" cells
and can mark the best ranked cell of each column. The ``role`` and ``kind`` columns of a report table
(``engine/rows.py``) are read, never printed: only measured rows that are not an upper bound are
ranked, and a rule separates measured, released and published rows.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..vocabulary import Kind, Role

STD, N = " std", " n"
ROW_FACTS = ("role", "kind")          # data about a row, for ranking and rules; not a column of the output
LOWER_IS_BETTER = {"gap"}
UNRANKED = {"oracle mIoU"}
SIGNED = {"gain", "delta", "CI low", "CI high"}


def render(table: pd.DataFrame, fmt: str, title: str = "", digits: int = 1, notes=(), bold: bool = False) -> str:
    """``table`` as text, md, csv, latex or html; ``notes`` go under it (CSV: ``#`` lines above the header).

    ``bold`` marks the best ranked cell of every ranked column (max; min for the gap).
    """
    facts = table.reindex(columns=list(ROW_FACTS))
    table = table.drop(columns=[c for c in ROW_FACTS if c in table])
    if fmt == "csv":
        comments = "".join(f"# {line}\n" for line in [title, *notes] if line)
        return comments + table.to_csv(float_format=f"%.{digits + 1}f")
    if fmt not in _FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    shown = [c for c in table.columns if not _is_companion(c, table)]
    best = _best(table, shown, digits, ranked(facts)) if bold else pd.DataFrame(False, table.index, shown)
    if best.to_numpy().any():
        notes = [*notes, f"{'*' if fmt == 'text' else 'Bold'}: best measured value of each column "
                         f"(published rows are not ranked)."]
    cells = [[_cell(table, i, c, digits) for c in shown] for i in range(len(table))]
    layout = _Layout(header=[table.index.name or "", *map(str, shown)],
                     text_columns=[True, *(_is_text(table[c]) for c in shown)],
                     rows=[[str(label), *row] for label, row in zip(table.index, cells)],
                     strong=[[False, *row] for row in best.to_numpy().tolist()],
                     rules=_rules(facts["kind"]))
    return _FORMATS[fmt](layout, title, list(notes))


def ranked(facts: pd.DataFrame) -> np.ndarray:
    """Rows that compete for best-in-column: measured and not an upper bound (every row of a plain table)."""
    kind, role = facts["kind"], facts["role"]
    return ((kind.isna() | kind.eq(Kind.MEASURED)) & ~role.eq(Role.UPPER_BOUND)).to_numpy()


@dataclass
class _Layout:
    header: list[str]
    text_columns: list[bool]          # left-aligned
    rows: list[list[str]]
    strong: list[list[bool]]          # best in column
    rules: list[int]                  # row indices that start a new kind of row (measured, released, paper)

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
    for start in reversed(layout.rules):
        body.insert(start, rule)
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
    for start in reversed(layout.rules):
        body.insert(start, r"\midrule")
    lines = [r"\begin{table}[t]", r"\centering", *([rf"\caption{{{esc(title)}}}"] if title else []),
             r"\begin{tabular}{" + "".join("l" if left else "r" for left in layout.text_columns) + "}",
             r"\toprule", " & ".join(map(esc, layout.header)) + r" \\", r"\midrule", *body, r"\bottomrule",
             r"\end{tabular}", *(rf"\par{{\footnotesize {esc(note)}}}" for note in notes), r"\end{table}"]
    return "\n".join(lines) + "\n"


TEXT, GROUP = ' class="text"', ' class="group"'


def _html(layout: _Layout, title: str, notes: list[str]) -> str:
    """An HTML fragment: a caption paragraph, the table (``class="text"`` on left-aligned cells, ``group``
    on a row that starts a new kind), the notes as a list. ``analysis/html.py`` styles and embeds it."""
    def cells(tag, row, strong):
        out = []
        for text, left, s in zip(row, layout.text_columns, strong):
            text = f"<strong>{html.escape(text)}</strong>" if s else html.escape(text)
            out.append(f"<{tag}{TEXT if left else ''}>{text}</{tag}>")
        return "".join(out)

    body = [f"<tr{GROUP if i in layout.rules else ''}>{cells('td', row, strong)}</tr>"
            for i, (row, strong) in enumerate(zip(layout.rows, layout.strong))]
    lines = [f"<p><strong>{html.escape(title)}</strong></p>"] if title else []
    lines += ["<table>", f"<thead><tr>{cells('th', layout.header, [False] * len(layout.header))}</tr></thead>",
              "<tbody>", *body, "</tbody>", "</table>"]
    lines += ["<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>"] if notes else []
    return "\n".join(lines) + "\n"


_FORMATS = {"text": _text, "md": _markdown, "latex": _latex, "html": _html}


def is_count(col: str) -> bool:
    return col == "seeds" or col.endswith(N)


def _is_companion(col: str, table: pd.DataFrame) -> bool:
    return any(col.endswith(s) and col[: -len(s)] in table.columns for s in (STD, N))


def _rules(kind: pd.Series) -> list[int]:
    """Where a new kind of row starts (measured, then released, then published rows)."""
    kinds = [k if isinstance(k, str) else Kind.MEASURED for k in kind]   # a plain table has no kind column
    return [i for i in range(1, len(kinds)) if kinds[i] != kinds[i - 1]]


def _best(table: pd.DataFrame, shown: list[str], digits: int, ranked_rows: np.ndarray) -> pd.DataFrame:
    """Best ranked cell of each ranked column, compared as printed (equal printed values tie)."""
    best = pd.DataFrame(False, table.index, shown)
    for col in shown:
        if col in UNRANKED or is_count(col) or _is_text(table[col]):
            continue
        values = pd.to_numeric(table[col], errors="coerce").where(ranked_rows).round(digits)
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
