"""Tables as text, Markdown, CSV, LaTeX or HTML, from one layout.

A table is a DataFrame indexed by row label. A value column ``c`` may carry companions ``c std`` (sample
std over seeds) and ``c n`` (seeds with a value); ``seeds`` counts a row's runs. CSV writes the frame as
it is (every number a column of its own); the other formats fold the companions into "mean ± std" cells
and can mark the best ranked cell of each column. The ``role`` and ``kind`` columns of a report table
(``engine/rows.py``) are read, never printed: only measured rows that are not an upper bound are
ranked, and a rule separates measured, released and published rows.

LaTeX is set to fit the page: every tabular is shrunk to the line width when it is wider; a table of more than
``WIDE`` columns (the per-class table) spans the page (``table*``), with its number columns' headers rotated and
each spread set under its mean. HTML tables scroll sideways in their own box with the row label and mIoU pinned.
"""

from __future__ import annotations

import html
import math
import re
import textwrap
import unicodedata
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..vocabulary import Kind, Role

STD, N = " std", " n"
ROW_FACTS = ("role", "kind")          # data about a row, for ranking and rules; not a column of the output
LOWER_IS_BETTER = {"gap"}
UNRANKED = {"oracle mIoU"}
SIGNED = {"gain", "delta", "CI low", "CI high", "Δ gain", "Δ gain forward", "Δ gain reverse", "interaction"}
PINNED = {"mIoU"}                     # HTML: kept in sight at the right edge while a wide table scrolls
PM = " ± "                            # between a cell's mean and its spread
WIDE = 8                              # LaTeX: a table of more columns spans the page (table*), headers rotated
NOTE_WIDTH = 110                      # text: notes wrap at this width (the table is as wide as its columns)


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
    notes = [textwrap.fill(note, NOTE_WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
             for note in notes]
    return "\n".join([*([title] if title else []), line(layout.header), rule, *body, *notes]) + "\n"


def _markdown(layout: _Layout, title: str, notes: list[str]) -> str:
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(layout.header) + " |",
              "|" + "|".join("---" if left else "---:" for left in layout.text_columns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in layout.decorated(lambda c: f"**{c}**")]
    lines += [""] + [f"- {note}" for note in notes] if notes else []
    return "\n".join(lines) + "\n"


def _greek_letters() -> dict[str, str]:
    """Greek letters (``λ`` in a label such as "MaxSquare (λ 0.5)") in math mode: LaTeX's text fonts have none.
    Capitals that look Latin (Α, Β, ...) have no command of their own and print as the Latin letter."""
    letters = {}
    for code in range(0x391, 0x3CA):
        named = re.fullmatch(r"GREEK (SMALL|CAPITAL) LETTER ([A-Z]+|FINAL SIGMA)", unicodedata.name(chr(code), ""))
        if named:
            word = {"lamda": "lambda", "final sigma": "varsigma"}.get(named[2].lower(), named[2].lower())
            if named[1] == "SMALL":
                letters[chr(code)] = "o" if word == "omicron" else rf"$\{word}$"
            else:
                letters[chr(code)] = (rf"$\{word.title()}$" if word in _GREEK_CAPITALS
                                      else chr(code).translate(_LOOKALIKE))
    return letters


_GREEK_CAPITALS = {"gamma", "delta", "theta", "lambda", "xi", "pi", "sigma", "upsilon", "phi", "psi", "omega"}
_LOOKALIKE = str.maketrans("ΑΒΕΖΗΙΚΜΝΟΡΤΧ", "ABEZHIKMNOPTX")
_LATEX = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                        "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "→": r"$\rightarrow$",
                        "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "·": r"$\cdot$", "−": "-",
                        "°": r"$^\circ$", **_greek_letters()})


def _latex(layout: _Layout, title: str, notes: list[str]) -> str:
    """A booktabs ``table`` shrunk to the line width when wider; more than ``WIDE`` columns: a ``table*`` with the
    number columns' headers rotated and spreads under their means. Needs booktabs and graphicx."""
    wide = len(layout.header) > WIDE
    cell = _stacked if wide else _esc
    header = [_esc(h) if left or not wide else rf"\rotatebox{{90}}{{{_esc(h)}}}"
              for h, left in zip(layout.header, layout.text_columns)]
    body = [" & ".join(r) + r" \\" for r in layout.decorated(lambda c: rf"\textbf{{{cell(c)}}}", cell)]
    for start in reversed(layout.rules):
        body.insert(start, r"\midrule")
    env = "table*" if wide else "table"
    lines = [rf"\begin{{{env}}}[t]", r"\centering", *_caption(title), *[r"\setlength{\tabcolsep}{3pt}"] * wide,
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             r"\begin{tabular}{" + "".join("l" if left else "r" for left in layout.text_columns) + "}",
             r"\toprule", " & ".join(header) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}}",
             *(rf"\par{{\footnotesize {_esc(note)}}}" for note in notes), rf"\end{{{env}}}"]
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.translate(_LATEX)


def _stacked(cell: str) -> str:
    """A "mean ± spread" cell as two right-aligned lines, the spread in script size (no wider than the mean)."""
    mean, pm, spread = cell.partition(PM)
    if not pm:
        return _esc(cell)
    return rf"\begin{{tabular}}[t]{{@{{}}r@{{}}}}{_esc(mean)}\\{{\scriptsize $\pm${_esc(spread)}}}\end{{tabular}}"


def _caption(title: str) -> list[str]:
    """Caption and label (``tab:`` and the title's words), none without a title."""
    label = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return [rf"\caption{{{_esc(title)}}}", rf"\label{{tab:{label}}}"] if title else []


GROUP = ' class="group"'


def _html(layout: _Layout, title: str, notes: list[str]) -> str:
    """An HTML fragment: a caption paragraph, the table in a ``scroll`` box (``class="text"`` on left-aligned
    cells, ``pin-left`` on the row labels and ``pin-right`` on ``PINNED`` columns, ``group`` on a row that starts
    a new kind), the notes as a list. ``analysis/html.py`` styles and embeds it."""
    classes = [_attribute(["text"] * left + ["pin-left"] * (i == 0) + ["pin-right"] * (name in PINNED))
               for i, (name, left) in enumerate(zip(layout.header, layout.text_columns))]

    def cells(tag, row, strong):
        texts = (f"<strong>{html.escape(text)}</strong>" if s else html.escape(text) for text, s in zip(row, strong))
        return "".join(f"<{tag}{cls}>{text}</{tag}>" for text, cls in zip(texts, classes))

    body = [f"<tr{GROUP if i in layout.rules else ''}>{cells('td', row, strong)}</tr>"
            for i, (row, strong) in enumerate(zip(layout.rows, layout.strong))]
    lines = [f"<p><strong>{html.escape(title)}</strong></p>"] if title else []
    lines += ['<div class="scroll">', "<table>",
              f"<thead><tr>{cells('th', layout.header, [False] * len(layout.header))}</tr></thead>",
              "<tbody>", *body, "</tbody>", "</table>", "</div>"]
    lines += ["<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>"] if notes else []
    return "\n".join(lines) + "\n"


def _attribute(classes: list[str]) -> str:
    return f' class="{" ".join(classes)}"' if classes else ""


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
    signed = col in SIGNED or col.startswith("delta ")          # and a comparison's "delta seed S"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    std = table[col + STD].iloc[i] if col + STD in table else math.nan
    if not pd.isna(std):
        text += f"{PM}{std:.{digits}f}"
    n = table[col + N].iloc[i] if col + N in table else pd.NA
    if "seeds" in table and not pd.isna(n) and not pd.isna(table["seeds"].iloc[i]) and n < table["seeds"].iloc[i]:
        text += f" [n={n}]"
    return text
