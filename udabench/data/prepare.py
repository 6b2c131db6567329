"""``udabench data prepare SUITE``: write the prepared cache (see ``cache.py``) of every dataset split a
suite's planned runs train and evaluate with (their suites: the plan's, stages included), at their sizes and class
set; current caches are left alone."""

from __future__ import annotations

import pandas as pd

from . import open_original, suite_datasets
from .cache import prepare


def prepare_suites(suites: list, workers: int = 0) -> pd.DataFrame:
    """One row per distinct (dataset, split, size, label size) of the suites: items, status, disk use and folder."""
    rows, seen = [], set()
    for suite, (_, ds, resize_label) in ((s, entry) for s in suites for entry in suite_datasets(s)):
        original, key = open_original(ds.dataset, ds.root, ds.split, ds.size, suite.classes, resize_label,
                                      suite.synthetic)
        if key in seen:
            continue
        seen.add(key)
        status = prepare(original, key, workers)
        size_mb = sum(f.stat().st_size for f in key.folder.rglob("*.*")) / 2**20
        rows.append({"dataset": ds.dataset, "split": ds.split,
                     "size": "x".join(map(str, key.size)) if key.size else "native",
                     "labels": "at size" if resize_label else "native", "items": len(original.samples),
                     "status": status, "MiB": round(size_mb, 1), "folder": str(key.folder)})
    return pd.DataFrame(rows).set_index("dataset")
