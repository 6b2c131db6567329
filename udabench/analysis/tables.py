"""Per-class IoU and oracle-gap tables (ADVENT Tables 1–2 layout) and their text renderings."""

from __future__ import annotations

import math

import pandas as pd

ORACLE = "oracle"
SOURCE_ONLY = "source_only"


def per_class_table(selected: pd.DataFrame, class_set: str) -> pd.DataFrame:
    """Rows = methods (Source-only first, Oracle last), columns = class IoUs, mIoU and seed count."""
    rows = []
    for _, group in _ordered_groups(selected):
        ious = pd.DataFrame([r[class_set]["iou"] for r in group["class_sets"]], dtype=float)
        mious = pd.Series([r[class_set]["miou"] for r in group["class_sets"]], dtype=float)
        row = {"method": group["method_label"].iloc[0], **ious.mean().to_dict(), "mIoU": mious.mean(),
               "seeds": len(group)}
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def oracle_gap_table(selected: pd.DataFrame, class_set: str) -> pd.DataFrame:
    """Method mIoU, oracle mIoU and the gap (oracle - method), means over seeds."""
    table = per_class_table(selected, class_set)
    oracle_rows = selected[selected["method"] == ORACLE]
    oracle_label = oracle_rows["method_label"].iloc[0] if len(oracle_rows) else None
    oracle = table.loc[oracle_label, "mIoU"] if oracle_label else math.nan
    gap = pd.DataFrame({"mIoU": table["mIoU"], "oracle mIoU": oracle, "gap": oracle - table["mIoU"]})
    return gap.drop(index=oracle_label) if oracle_label else gap


def _ordered_groups(selected: pd.DataFrame):
    groups = dict(tuple(selected.groupby("method", sort=False)))
    order = sorted(groups, key=lambda m: (m != SOURCE_ONLY, m == ORACLE, m))
    return [(m, groups[m]) for m in order]


def render(table: pd.DataFrame, fmt: str, title: str = "", digits: int = 1) -> str:
    header = [table.index.name or "", *map(str, table.columns)]
    body = [[str(idx), *(_fmt(v, digits) for v in row)] for idx, row in zip(table.index, table.itertuples(index=False))]
    if fmt == "csv":
        return table.to_csv(float_format=f"%.{digits + 1}f")
    if fmt == "md":
        lines = [f"**{title}**", ""] if title else []
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
        lines = [r"\begin{table}[t]", r"\centering"]
        if title:
            lines.append(rf"\caption{{{esc(title)}}}")
        lines += [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                  " & ".join(map(esc, header)) + r" \\", r"\midrule"]
        lines += [" & ".join(map(esc, r)) + r" \\" for r in body]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    if fmt == "text":
        widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]
        fmt_row = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        lines = [title] if title else []
        lines += [fmt_row(header), "  ".join("-" * w for w in widths), *map(fmt_row, body)]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def _fmt(value, digits: int) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)
