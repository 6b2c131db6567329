"""The code that trained a table's rows: one method's rows trained by different code are flagged.

Every row records the code of its run (``code``: the method's files with their digests, ``provenance.py``). A
plugin's code is part of its runs' identity, so runs of two versions of it are two table rows, labelled with the
``code=`` digest that tells them apart (``configurations.py``). Runs of one configuration can still differ in code
where the code is not in their identity (a built-in file as two udabench versions released it, a method defined
outside a file): that row is labelled "mixed code". Either way a note names each version's files and seeds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

MIXED = "mixed code"   # the qualifier of a row whose runs were trained by different code


def method_codes(records: pd.DataFrame) -> pd.Series:
    """Each row's method code digest (None where the row does not record one: written before udabench did)."""
    codes = records["code"] if "code" in records else pd.Series([None] * len(records), records.index)
    return codes.map(lambda c: c.get("method_code") if isinstance(c, dict) else None)


def mixed_code(records: pd.DataFrame) -> set[str]:
    """The configurations (``config``) whose rows were trained by more than one version of their method's code."""
    versions = method_codes(records).groupby(records["config"]).nunique()
    return set(versions[versions > 1].index)


def code_notes(records: pd.DataFrame) -> list[str]:
    """One note naming the code of every row of a method whose rows were trained by different code."""
    codes = records.assign(method_code=method_codes(records)).dropna(subset=["method_code"])
    several = codes.groupby("method")["method_code"].nunique()
    shown = codes[codes["method"].isin(several[several > 1].index)]
    if shown.empty:
        return []
    parts = []
    for (label, _), rows in shown.groupby(["label", "method_code"], sort=True):
        seeds = sorted(rows["seed"].unique())
        files = " + ".join(f"{Path(f).name} {d}" for f, d in rows["code"].iloc[0].get("method_files", {}).items())
        parts.append(f"{label}, seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}: {files}")
    return [f"Rows of one method trained by different code (the digests of its files, as env.json and every row "
            f"record them; code=-: a built-in file as udabench released it, or a run older than these records): "
            f"{'; '.join(parts)}."]
