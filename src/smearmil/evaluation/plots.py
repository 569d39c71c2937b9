"""Plots of results (PNG): ROC curves, confusion matrices, reliability diagrams and probability histograms.

Every plot names what it shows: the positive class on the axes of binary plots, a legend or a colour
bar for every mark and colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from ..utils.plotting import plt, save_figure


def roc_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "ROC (test folds)",
    positive: str | None = None,
) -> Path:
    """One ROC curve per method: ``{name: (y, P(class 1))}``; ``positive`` names class 1 on the axes."""
    from sklearn.metrics import auc

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (y, score) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.2f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="chance")
    named = f" (positive class: {positive})" if positive else ""
    ax.set(xlabel="1 - specificity", ylabel=f"sensitivity{named}", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, Path(path))


def confusion_plot(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str = "confusion (test folds)"
) -> Path:
    """Counts of patients per true (rows) and predicted (columns) class, with a colour bar."""
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(2.2 + 0.9 * len(class_names), 1 + 0.9 * len(class_names)))
    shown = ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(shown, ax=ax, label="patients", fraction=0.046, pad=0.04)
    return save_figure(fig, Path(path))


def reliability(y: np.ndarray, p: np.ndarray, bins: int) -> list[tuple[float, float, int]]:
    """Per equal-width bin of ``p`` holding patients: (mean predicted probability, observed fraction, count)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [
        (float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def calibration_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    positive: str,
    bins: int = 5,
    title: str = "calibration (reliability diagram)",
) -> Path:
    """Reliability diagram, one curve per method ``{name: (y, P(positive))}``: the observed share of
    ``positive`` patients against the mean predicted probability per bin, beside the diagonal of a perfectly
    calibrated model; below it, the patients per bin as bars (numbered), which never collide with the curve."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5, 6.2), sharex=True, height_ratios=(3, 1), layout="constrained")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    shown = [(name, np.asarray(y, dtype=float), np.asarray(p, dtype=float)) for name, (y, p) in curves.items()]
    shown = [(name, y, p) for name, y, p in shown if len(p)]
    width = (1 / bins) * 0.8 / max(1, len(shown))
    for k, (name, y, p) in enumerate(shown):
        xs, ys, _ = map(np.array, zip(*reliability(y, p, bins)))
        (line,) = ax.plot(xs, ys, "-o", lw=1, markersize=4, label=name)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        n = np.bincount(which, minlength=bins)
        left = edges[:-1] + (1 / bins) * 0.1 + k * width
        bars = counts.bar(left, n, width, align="edge", color=line.get_color())
        if len(shown) == 1:
            counts.bar_label(bars, labels=[str(v) if v else "" for v in n], fontsize=7, padding=1)
    ax.set(ylabel=f"observed share of {positive} patients", title=title, xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.legend(loc="upper left", fontsize=8)
    counts.set(xlabel=f"predicted P({positive}), {bins} bins", ylabel="patients")
    counts.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))
    counts.margins(y=0.3)
    return save_figure(fig, Path(path))


def probability_histogram(
    values: np.ndarray, groups: Sequence[str], path: str | Path, xlabel: str, legend_title: str, title: str = ""
) -> Path:
    """Stacked histogram of probabilities on [0, 1], one colour per group (e.g. the true class), with a legend."""
    values = np.asarray(values, dtype=float)
    names = sorted(set(groups))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    stacks = [values[np.array([g == name for g in groups], dtype=bool)] for name in names]
    ax.hist(
        stacks, bins=[i / 10 for i in range(11)], stacked=True, label=[f"{n} ({len(s)})" for n, s in zip(names, stacks)]
    )
    ax.set(xlabel=xlabel, ylabel="patients", xlim=(0, 1), title=title)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(title=legend_title, fontsize=8)
    return save_figure(fig, Path(path))


def cell_type_attention_plot(
    table: Mapping[str, Mapping[str, Mapping[str, float]]], class_names: Sequence[str], path: str | Path
) -> Path:
    """Grouped bars on a log scale (plain tick labels): mean relative attention of each cell type, one bar per
    true class, each labelled with its number of cells; the dashed line is uniform attention (1)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    kinds = sorted({k for per in table.values() for k in per})
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(kinds) * len(class_names) + 2), 4.2))
    width = 0.8 / max(1, len(class_names))
    for c, label in enumerate(class_names):
        rows = [table.get(label, {}).get(k, {}) for k in kinds]
        values = np.array([r.get("mean_relative_attention", np.nan) for r in rows], dtype=float)
        values[values <= 0] = np.nan
        x = np.arange(len(kinds)) + c * width
        ax.bar(x, values, width, label=label)
        for xi, v, r in zip(x, values, rows):
            if np.isfinite(v):
                ax.annotate(f"{int(r['n_cells'])}", (xi, v), ha="center", va="bottom", fontsize=6)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(1.0, color="grey", lw=0.8, ls="--", label="uniform (1)")
    ax.set_xticks(np.arange(len(kinds)) + width * (len(class_names) - 1) / 2)
    ax.set_xticklabels(kinds, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("mean relative attention (log scale)")
    ax.set_title("Which cells the model looks at (test folds; numbers: cells)")
    ax.legend(title="true class", fontsize=8)
    return save_figure(fig, Path(path))
