"""``udabench report --ladder``: a ladder's rungs as a table, its gain decomposed factor by factor.

Per rung (``ladder/manifest.py`` names its runs by id): M's mIoU, Source-only's, the gain (their per-seed
difference) and the gain's change from the previous rung, mean ± std over the seeds every rung of the chain has
finished, each run's row chosen by its rung's selection. Over those common seeds the changes telescope: their sum is
the gain at TO minus the gain at FROM exactly (stated under the table). With both orders, each factor's effect is
shown as the pair (forward, reverse): where they differ the factor interacts with those moved before it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..ladder.manifest import read_manifests
from ..selection import get_selection, select
from .records import load_records
from .render import render

BASELINE_LABEL = "Source-only"


def ladder_report(results: str | Path, name: str | None, fmt: str = "text", figures: bool = False) -> tuple[str, list]:
    """The tables of every ladder under ``results`` (or of ``name``) and, with ``figures``, their waterfall figures
    (``results/<ladder>/figures/``); (text, written files)."""
    parts, written = [], []
    for manifest in read_manifests(results, name):
        records = load_records(results, manifest["ladder"])
        chains = {chain: chain_values(manifest, records, chain) for chain in _chains(manifest)}
        for chain, values in chains.items():
            table = chain_table(manifest, values)
            parts.append(render(table, fmt, _title(manifest, chain), digits=2, notes=_notes(manifest, chain, values)))
            if figures and values.steps_complete():
                from .figures import ladder_waterfall, save

                stem = Path(results) / manifest["ladder"] / "figures" / f"ladder-{manifest['method']}-{chain}"
                stem.parent.mkdir(parents=True, exist_ok=True)
                written += save(ladder_waterfall(waterfall_steps(manifest, values), _title(manifest, chain)), stem)
        if len(chains) == 2:
            parts.append(render(pair_table(manifest, chains), fmt, f"{manifest['ladder']}: each factor's effect on "
                                f"the gain of {manifest['method']}, in both orders", digits=2,
                                notes=["forward: the factor moved after those before it in the order; reverse: "
                                       "after those after it. A difference is an interaction with the factors "
                                       "moved before it."]))
    return "\n".join(parts), written


class ChainValues:
    """Per rung of one chain (step order): the per-seed mIoU of M and of Source-only over the common seeds."""

    def __init__(self, rungs: list[dict], method: pd.DataFrame, baseline: pd.DataFrame, label: str):
        self.rungs, self.method, self.baseline, self.label = rungs, method, baseline, label

    @property
    def gain(self) -> pd.DataFrame:
        return self.method - self.baseline

    def steps_complete(self) -> bool:
        return bool(len(self.method.columns)) and not self.gain.isna().any().any()


def _chains(manifest: dict) -> list[str]:
    return list(dict.fromkeys(r["chain"] for r in manifest["rungs"]))


def chain_values(manifest: dict, records: pd.DataFrame, chain: str) -> ChainValues:
    """The selected mIoU of each rung's runs (rows: steps; columns: the seeds finished in every rung of the chain,
    or, where no seed is, each seed's own runs)."""
    rungs = sorted((r for r in manifest["rungs"] if r["chain"] == chain), key=lambda r: r["step"])
    by_run = {run_id: rows for run_id, rows in records.groupby("run_id")}
    method, label = manifest["method"], manifest["method"]
    scores = {m: {} for m in ("source_only", method)}
    for rung in rungs:
        for m in scores:
            for seed, run_id in rung["runs"][m].items():
                rows = by_run.get(run_id)
                if rows is None:
                    continue
                chosen = select(rows, rung["selection"]).iloc[0]
                scores[m][(rung["step"], int(seed))] = chosen["miou"]
                if m == method:
                    label = str(chosen["method_label"]).split(" → ")[-1]
    frames = {m: pd.Series(v, dtype=float).unstack() if v else pd.DataFrame() for m, v in scores.items()}
    steps = [r["step"] for r in rungs]
    frames = {m: f.reindex(index=steps) for m, f in frames.items()}
    both = frames[method].notna() & frames["source_only"].notna()
    common = [s for s in both.columns if both[s].all()]
    keep = common or list(both.columns)
    return ChainValues(rungs, frames[method].reindex(columns=keep), frames["source_only"].reindex(columns=keep), label)


def chain_table(manifest: dict, values: ChainValues) -> pd.DataFrame:
    """One row per rung: M's mIoU, Source-only's, the gain and its change from the previous rung (± std)."""
    gain, delta = values.gain, values.gain.diff()
    rows = []
    for i, rung in enumerate(values.rungs):
        row = {"rung": _rung_label(manifest, rung)}
        for column, frame in ((f"{values.label} mIoU", values.method), (f"{BASELINE_LABEL} mIoU", values.baseline),
                              ("gain", gain), ("Δ gain", delta if i else None)):
            seeds = frame.iloc[i].dropna() if frame is not None else pd.Series(dtype=float)
            row |= {column: seeds.mean() if len(seeds) else np.nan,
                    f"{column} std": seeds.std(ddof=1) if len(seeds) > 1 else np.nan}
        row["seeds"] = int(gain.iloc[i].notna().sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("rung").astype({"seeds": "Int64"})


def pair_table(manifest: dict, chains: dict[str, ChainValues]) -> pd.DataFrame:
    """Per factor: the change of the gain it makes moved in the forward order, and in the reverse one."""
    effects = {chain: _effects(values) for chain, values in chains.items()}
    rows = [{"factor": manifest["factors"][f]["title"], "Δ gain forward": effects["forward"].get(f, np.nan),
             "Δ gain reverse": effects["reverse"].get(f, np.nan)} for f in manifest["order"]]
    table = pd.DataFrame(rows).set_index("factor")
    table["interaction"] = table["Δ gain forward"] - table["Δ gain reverse"]
    return table


def _effects(values: ChainValues) -> dict[str, float]:
    means = values.gain.mean(axis=1)
    return {r["factor"]: means.iloc[i] - means.iloc[i - 1] for i, r in enumerate(values.rungs) if i}


def waterfall_steps(manifest: dict, values: ChainValues) -> list[tuple[str, float]]:
    """(label, value) bars: the gain at FROM, each factor's change, the gain at TO."""
    means = values.gain.mean(axis=1).tolist()
    steps = [(f"FROM {manifest['from_name']}", means[0])]
    steps += [(r["factor"], means[i] - means[i - 1])
              for i, r in enumerate(values.rungs) if i]
    return [*steps, (f"TO {manifest['to_name']}", means[-1])]


def _rung_label(manifest: dict, rung: dict) -> str:
    if rung["step"] == 0:
        return f"0 FROM {manifest['from_name']}"
    last = rung["step"] == len(manifest["order"])
    return f"{rung['step']} + {rung['factor']}" + (f" = TO {manifest['to_name']}" if last else "")


def _title(manifest: dict, chain: str) -> str:
    order = manifest["order"] if chain == "forward" else manifest["order"][::-1]
    return (f"{manifest['ladder']}: {manifest['method']} from {manifest['from_name']} to {manifest['to_name']}, "
            f"order: {' → '.join(order)}" + (" (reverse)" if chain == "reverse" else ""))


def _notes(manifest: dict, chain: str, values: ChainValues) -> list[str]:
    notes = []
    for f in manifest["order"]:
        moved = "; ".join(f"{k}: {_show(a)} → {_show(b)}" for k, (a, b) in manifest["factors"][f]["settings"].items())
        notes.append(f"{f}: {moved}")
    selections = dict.fromkeys(r["selection"] for r in values.rungs)
    notes += [n for s in selections for n in get_selection(s).notes()]
    notes.append(f"gain = {values.label} − {BASELINE_LABEL} per seed; Δ gain = its change from the rung above, "
                 f"paired by seed; mean ± std over seeds {', '.join(map(str, values.gain.columns)) or '(none)'}.")
    if values.steps_complete():
        means = values.gain.mean(axis=1)
        total = float(values.gain.diff().mean(axis=1).iloc[1:].sum())
        notes.append(f"Telescoping: Σ Δ gain = {total:+.2f} = gain at TO ({means.iloc[-1]:.2f}) − gain at FROM "
                     f"({means.iloc[0]:.2f}).")
    else:
        missing = [str(r["step"]) for i, r in enumerate(values.rungs) if values.gain.iloc[i].isna().all()]
        notes.append(f"Incomplete: rungs {', '.join(missing) or '(some seeds)'} lack finished runs of both methods "
                     f"in a common seed; `udabench ladder ... --status` shows them.")
    return notes


def _show(value) -> str:
    return "(unset)" if value is None else str(value)
