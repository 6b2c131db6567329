"""``udabench report --speed``: what the steps of finished runs cost, one table per suite.

Every training row records its window's mean step time split into data wait and compute, images/s,
the peak memory and the FLOPs of a step counted once at the start of the phase (engine/trainer.py).
A method's numbers are the mean over its rows after the source warm-up (warm-up steps are plain
source steps, whatever the method), over every seed; rows of runs that predate these fields show "-".
"""

from __future__ import annotations

import math

import pandas as pd

from ..vocabulary import Kind
from .configurations import label_notes
from .records import protocol_field
from .render import render

COLUMNS = ("step_time", "data_time", "compute_time", "images_per_s", "flops_per_step", "peak_mem_gb")


def speed_tables(records: pd.DataFrame, fmt: str = "text") -> list[str]:
    parts = []
    for suite, rows in records.groupby("suite", sort=True):
        table = speed_table(rows)
        title = f"{suite}: training speed (mean over the rows after the source warm-up, all seeds)"
        notes = ["data wait: fetching and copying the batches; compute: the step until the device is done. "
                 "TFLOP/s: counted FLOPs (matmuls and convolutions, forward and backward) over compute time. "
                 "Peak GB: CUDA peak allocated memory, or on a CPU the process's peak resident memory."]
        parts.append(render(table, fmt, title, notes=notes + label_notes(rows)))
    return parts


def speed_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (``load_records``: runs that differ in a setting, e.g. ``train.amp``, are
    rows of their own), in the report's row order; only trained (measured) runs have speed fields."""
    rows = rows[rows["kind"] == Kind.MEASURED]
    rows = rows.assign(**{c: pd.to_numeric(rows[c], errors="coerce") if c in rows else math.nan for c in COLUMNS})
    warmup = pd.to_numeric(protocol_field(rows, "source_warmup"), errors="coerce").fillna(0)
    rows = rows.assign(setting=_settings(rows), adapting=rows["step"] > warmup)
    out = []
    for _, group in sorted(rows.groupby("config"), key=lambda item: (item[1]["row_order"].iloc[0], item[0])):
        group = group[group["adapting"]] if group["adapting"].any() else group
        mean = group[list(COLUMNS)].mean()
        out.append({"method": group["label"].iloc[0], "setting": group["setting"].iloc[0],
                    "seeds": group["seed"].nunique(),
                    "ms/step": _fmt(1000 * mean["step_time"]), "data ms": _fmt(1000 * mean["data_time"]),
                    "compute ms": _fmt(1000 * mean["compute_time"]),
                    "data %": _fmt(100 * mean["data_time"] / mean["step_time"]),
                    "images/s": _fmt(mean["images_per_s"]), "GFLOP/step": _fmt(mean["flops_per_step"] / 1e9),
                    "TFLOP/s": _fmt(mean["flops_per_step"] / mean["compute_time"] / 1e12),
                    "peak GB": _fmt(mean["peak_mem_gb"])})
    return pd.DataFrame(out).set_index("method")


def _settings(rows: pd.DataFrame) -> pd.Series:
    """``amp`` (fp32 when none), ``+channels_last``, ``+compile``, from each row's protocol."""
    amp = protocol_field(rows, "amp").replace({"none": "fp32", "": "fp32"})
    flags = [(protocol_field(rows, key) == "True").map({True: f"+{key}", False: ""})
             for key in ("channels_last", "compile")]
    return amp + flags[0] + flags[1]


def _fmt(value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"
