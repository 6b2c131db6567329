"""Report figures, drawn with seaborn and saved as PNG and PDF (``results/<suite>/figures/``).

Figures are ``matplotlib.figure.Figure`` objects rendered straight to files (Agg for PNG), never
through pyplot: no display is needed and the caller's matplotlib backend and state are left alone.
Rows are the tables' rows (one per configuration, ``label``), in table order: Source-only first, Oracle last.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..classes import get_class_set
from ..vocabulary import Role
from .configurations import label_notes
from .panels import PredictionPanels
from .tables import matching, ordered_groups, per_class_table

STYLE = "whitegrid"
LEGEND_WIDTH = 140   # characters per line of the label legend under a figure


def write_figures(selected: pd.DataFrame, records: pd.DataFrame, class_set: str, out_dir: str | Path, *,
                  ccd: pd.DataFrame | None = None, panels: PredictionPanels | None = None,
                  selection: str = "last") -> list[Path]:
    """Draw every report figure of one suite into ``out_dir``; return the files (PNG and PDF of each).

    ``selected``: one evaluation row per run (chosen by the ``selection`` protocol, named in titles);
    ``records``: every evaluation row (for the learning curves); ``ccd``: ``ccd_features.suite_ccd``
    output; ``panels``: ``panels.prediction_panels`` output. Figures whose data are missing (no
    Source-only run, no CCD, no panels) are skipped. File names: iou_heatmap, gain_over_source_only,
    ccd_per_class, miou_vs_iteration, predictions.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suite = selected["suite"].iloc[0]
    drawn = draw_figures(selected, records, class_set, suite, selection, ccd, panels)
    paths = []
    for name, fig in drawn.items():
        if fig is not None:
            paths += save(fig, out_dir / name)
    return paths


def draw_figures(selected: pd.DataFrame, records: pd.DataFrame, class_set: str, suite: str, selection: str = "last",
                 ccd: pd.DataFrame | None = None, panels: PredictionPanels | None = None) -> dict[str, Figure | None]:
    """The figures of ``write_figures`` by file name (None: no data for it), each with the legend of the tags in
    its row labels (``configurations.label_notes``) under it."""
    with sns.axes_style(STYLE):   # applies to the axes created inside
        drawn = _draw(selected, records, class_set, suite, selection, ccd, panels)
    notes = label_notes(records)
    for fig in drawn.values():
        if fig is not None and notes:
            footnote(fig, notes)
    return drawn


def footnote(fig: Figure, notes: list[str]) -> None:
    """``notes`` in small type under everything drawn so far (rotated tick labels included); ``save``'s tight
    bounding box takes them in."""
    drawn = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer())   # inches
    fig.text(drawn.x0 / fig.get_figwidth(), (drawn.y0 - 0.1) / fig.get_figheight(),
             "\n".join(textwrap.fill(note, LEGEND_WIDTH, subsequent_indent="    ") for note in notes),
             fontsize=7, va="top", ha="left")


def _draw(selected, records, class_set, suite, selection, ccd, panels) -> dict[str, Figure | None]:
    where = f"{class_set}, selection: {selection}"
    labels = method_order(records)
    palette = dict(zip(labels, sns.color_palette(n_colors=len(labels))))   # one colour per method in every figure
    drawn = {
        "iou_heatmap": iou_heatmap(selected, class_set, f"{suite}: per-class IoU (%), {where}, mean over seeds"),
        "gain_over_source_only": gain_over_source_only(selected, class_set,
                                                       f"{suite}: IoU gain over Source-only (points), {where}"),
        "miou_vs_iteration": miou_vs_iteration(records, class_set,
                                               f"{suite}: mIoU ({class_set}) during training, mean ± std over seeds",
                                               palette),
    }
    if ccd is not None:
        drawn["ccd_per_class"] = ccd_per_class(ccd, f"{suite}: class-center distance (FADA eq. 9), lower is better",
                                               palette)
    if panels is not None:
        drawn["predictions"] = predictions(panels, f"{suite}: predictions and entropy maps on target eval images")
    return drawn


def save(fig: Figure, stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.pdf (no creation date in the PDF, so it depends on the data only)."""
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    return [png, pdf]


def method_order(frame: pd.DataFrame) -> list[str]:
    """Row labels of ``frame`` (records columns) in table order."""
    return [group["label"].iloc[0] for _, group in ordered_groups(frame)]


def iou_means(selected: pd.DataFrame, class_set: str) -> pd.DataFrame:
    """Rows × (class IoUs, mIoU): the means over seeds of the report's per-class table."""
    classes = list(selected["class_sets"].iloc[0][class_set]["iou"])
    return per_class_table(selected, class_set)[[*classes, "mIoU"]].astype(float)


def iou_heatmap(selected: pd.DataFrame, class_set: str, title: str) -> Figure:
    return _heatmap(iou_means(selected, class_set), title, cmap="viridis", vmin=0, vmax=100)


def gain_over_source_only(selected: pd.DataFrame, class_set: str, title: str) -> Figure | None:
    """Per-class IoU of each row minus that of its Source-only row (the lower bound of the same suite
    settings; means over seeds); rows without one are left out, and None when no row has one."""
    baseline = matching(selected, Role.LOWER_BOUND)
    if not baseline:
        return None
    table = iou_means(selected, class_set)
    rows = [row for row in table.index if row in baseline]
    gain = pd.DataFrame([table.loc[row] - table.loc[baseline[row]] for row in rows], index=rows)
    # The colour range follows the UDA rows: the Oracle's far larger gains would wash them out (its
    # cells saturate; their values are printed).
    bounds = selected.loc[selected["role"] == Role.UPPER_BOUND, "label"]
    adapted = gain.drop(index=bounds, errors="ignore")
    limit = max(float(np.nanmax(np.abs((adapted if not adapted.empty else gain).to_numpy()))), 1.0)
    return _heatmap(gain, title, cmap="vlag_r", vmin=-limit, vmax=limit, fmt="+.1f")


def ladder_waterfall(steps: list[tuple[str, float]], title: str) -> Figure:
    """A ladder's gain decomposed (``analysis/ladder.py``): the gain at FROM and at TO as bars from zero, each
    factor's change between them as a bar floating from the running total (blue up, red down), values printed."""
    labels, values = [label for label, _ in steps], [value for _, value in steps]
    bottoms, heights, total = [0.0], [values[0]], values[0]
    for change in values[1:-1]:
        bottoms.append(total)
        heights.append(change)
        total += change
    bottoms.append(0.0)
    heights.append(values[-1])
    deep = sns.color_palette("deep")
    up, down = deep[0], deep[3]   # blue: the factor raises the gain; red: it lowers it
    colours = ["0.6" if i in (0, len(steps) - 1) else up if h >= 0 else down for i, h in enumerate(heights)]
    with sns.axes_style(STYLE):
        fig = Figure(figsize=(1.5 + 0.9 * len(steps), 4.5))
        ax = fig.add_subplot()
        ax.bar(range(len(steps)), heights, bottom=bottoms, color=colours, edgecolor="black", linewidth=0.5)
        for i, (bottom, height) in enumerate(zip(bottoms, heights)):
            ax.annotate(f"{height:+.2f}" if 0 < i < len(steps) - 1 else f"{height:.2f}", (i, bottom + height),
                        ha="center", va="bottom" if height >= 0 else "top", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ends = [0.0, *bottoms, *(b + h for b, h in zip(bottoms, heights))]
        pad = 0.1 * (max(ends) - min(ends) or 1.0)   # room for the printed values (floating bars pin autoscaling)
        ax.set_ylim(min(ends) - (pad if min(ends) < 0 else 0), max(ends) + pad)
        ax.set_xticks(range(len(steps)), ["\n".join(textwrap.wrap(label, 18)) for label in labels], fontsize=7,
                      rotation=30, ha="right")
        ax.set(title="\n".join(textwrap.wrap(title, 12 + 8 * len(steps))), ylabel="gain over Source-only (mIoU points)")
    return fig


def _heatmap(table: pd.DataFrame, title: str, fmt: str = ".1f", **kw) -> Figure:
    fig = Figure(figsize=(1.5 + 0.5 * table.shape[1], 1.2 + 0.4 * table.shape[0]))
    ax = fig.add_subplot()
    sns.heatmap(table.astype(float), annot=True, fmt=fmt, annot_kws={"size": 7}, linewidths=0.5, ax=ax,
                cbar_kws={"pad": 0.01}, **kw)
    ax.set(title=title, xlabel="", ylabel="")
    ax.tick_params(axis="x", rotation=60)
    ax.tick_params(axis="y", rotation=0)
    return fig


def miou_vs_iteration(records: pd.DataFrame, class_set: str, title: str, palette=None) -> Figure:
    """mIoU of every evaluation against the training step; line = mean over seeds, band = ± std."""
    data = records.assign(mIoU=[row[class_set]["miou"] for row in records["class_sets"]])
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    sns.lineplot(data=data, x="step", y="mIoU", hue="label", hue_order=method_order(records),
                 palette=palette, errorbar="sd", marker="o", ax=ax)
    ax.set(title=title, xlabel="iteration", ylabel="mIoU (%)")
    ax.legend(title="", fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def ccd_per_class(ccd: pd.DataFrame, title: str, palette=None) -> Figure:
    """Bars: CCD per class and method (mean over seeds; whiskers ± std), the per-run class mean last.

    Uses the ``joint`` scope (source and target together, as in FADA Fig. 4) when present.
    """
    scope = "joint" if "joint" in set(ccd["scope"]) else ccd["scope"].iloc[0]
    data = ccd[ccd["scope"] == scope]
    means = data.groupby(["run_dir", "label"], as_index=False, sort=False)["ccd"].mean()
    data = pd.concat([data, means.assign(**{"class": "mean"})], ignore_index=True)
    fig = Figure(figsize=(2 + 0.55 * data["class"].nunique(), 4))
    ax = fig.add_subplot()
    sns.barplot(data=data, x="class", y="ccd", hue="label", hue_order=method_order(ccd), palette=palette,
                errorbar="sd", err_kws={"linewidth": 0.8}, ax=ax)
    ax.set(title=f"{title} ({scope} features)", xlabel="", ylabel="CCD (mean ± std over seeds)")
    ax.tick_params(axis="x", rotation=60)
    ax.legend(title="", fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def predictions(panels: PredictionPanels, title: str) -> Figure:
    """ADVENT Fig. 1 layout: per image a column pair, (image | ground truth) on top, then one row per
    method (prediction | entropy map); entropy colour bar on the right, class legend below."""
    methods, n = list(panels.predictions), len(panels.images)
    rows, aspect, cell = 1 + len(methods), panels.images[0].shape[0] / panels.images[0].shape[1], 2.0
    fig = Figure(figsize=(cell * 2 * n + 1.2, cell * (aspect * rows + 0.4) * 1.15 + 0.8))
    grid = fig.add_gridspec(rows + 1, 2 * n + 1, width_ratios=[1] * 2 * n + [0.05],
                            height_ratios=[aspect] * rows + [0.4], wspace=0.04, hspace=0.25)
    content = [("", ("image", "ground truth"), list(zip(panels.images, panels.labels)))]
    content += [(m, ("prediction", "entropy"), list(zip(panels.predictions[m], panels.entropies[m]))) for m in methods]
    for r, (label, titles, pairs) in enumerate(content):
        for i, pair in enumerate(pairs):
            for j, picture in enumerate(pair):
                ax = fig.add_subplot(grid[r, 2 * i + j])
                ax.imshow(picture)
                ax.set(xticks=[], yticks=[], ylabel=label if i == j == 0 else "")
                if r <= 1:
                    ax.set_title(titles[j], fontsize=8)
    fig.colorbar(ScalarMappable(Normalize(0, 1), "viridis"), cax=fig.add_subplot(grid[1:rows, -1]),
                 label="normalised entropy")
    classes = get_class_set(panels.classes)
    legend = fig.add_subplot(grid[rows, :-1])
    legend.axis("off")
    legend.legend(handles=[Patch(color=np.array(c) / 255, label=name) for name, c in zip(classes.names, classes.colors)],
                  loc="center", ncol=min(10, classes.num_classes), fontsize=7, frameon=False)
    fig.suptitle(f"{title}\n{', '.join(panels.names)}", fontsize=9)
    return fig
