"""Metric summaries: mean and std across folds, bootstrap 95% intervals on pooled predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix

from ..utils.scoring import METRICS, per_class_f1, predict_labels, resampled_scores, scores

__all__ = [
    "METRICS",
    "bootstrap_ci",
    "confusion",
    "displayed_metrics",
    "fold_summary",
    "folds_note",
    "per_class_f1",
    "predict_labels",
    "scores",
]


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def fold_summary(per_fold: Sequence[dict[str, float]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Per metric, the mean and sample std over the folds, and the metrics defined on only some folds.

    A metric undefined on a fold (e.g. ROC-AUC with one class in its test set) is missing from the
    first mapping (mean and std None), never a mean over the other folds shown as if complete; the
    second gives that partial mean with ``n_folds`` (how many it was computed on) and ``of``.
    """
    complete: dict[str, dict[str, Any]] = {}
    partial: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        values = np.array([f[m] for f in per_fold], dtype=np.float64)
        values = values[np.isfinite(values)]
        cell = {
            "mean": _clean(values.mean()) if values.size else None,
            "std": _clean(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size == 1 else None),
        }
        if values.size == len(per_fold):
            complete[m] = cell
        else:
            complete[m] = {"mean": None, "std": None}
            partial[m] = {**cell, "n_folds": int(values.size), "of": len(per_fold)}
    return complete, partial


def displayed_metrics(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A summary's metrics for tables: a metric defined on only some folds shows its partial mean with
    ``n_folds`` and ``of`` (see ``folds_note``)."""
    cells = {m: dict(v) for m, v in summary["metrics"].items()}
    for m, partial in (summary.get("partial_metrics") or {}).items():
        cells[m] = {**cells.get(m, {}), **partial}
    return cells


def folds_note(cell: dict[str, Any] | None) -> str:
    """`` (4/5 folds)`` when a cell is a mean over fewer folds than there are, else ``""``."""
    if not cell or cell.get("n_folds") is None or cell.get("n_folds") == cell.get("of"):
        return ""
    return f" ({cell['n_folds']}/{cell['of']} folds)"


def bootstrap_ci(
    y: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray = 0.5, n: int = 1000, seed: int = 0
) -> dict[str, list[float | None]]:
    """Percentile 95% intervals of every metric, resampling patients with replacement."""
    rng = np.random.default_rng(seed)
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(y),))
    idx = np.stack([rng.integers(0, len(y), len(y)) for _ in range(n)]) if len(y) else np.zeros((0, 0), int)
    draws = resampled_scores(np.asarray(y), proba, thresholds, idx) if idx.size else {m: np.zeros(0) for m in METRICS}
    out: dict[str, list[float | None]] = {}
    for m in METRICS:
        values = np.asarray(draws[m], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[m] = (
            [_clean(np.percentile(values, 2.5)), _clean(np.percentile(values, 97.5))] if values.size else [None, None]
        )
    return out


def confusion(y: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray = 0.5) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    return confusion_matrix(y, predict_labels(proba, threshold), labels=list(range(proba.shape[1]))).tolist()
