"""Metric summaries: mean and std across folds, bootstrap 95% intervals on pooled predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix

from ..utils.scoring import METRICS, per_class_f1, predict_labels, scores

__all__ = ["METRICS", "bootstrap_ci", "confusion", "fold_summary", "per_class_f1", "predict_labels", "scores"]


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def fold_summary(per_fold: Sequence[dict[str, float]]) -> dict[str, dict[str, float | None]]:
    """Mean and sample std of each metric over folds (folds where it is undefined are left out)."""
    out = {}
    for m in METRICS:
        values = np.array([f[m] for f in per_fold], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[m] = {
            "mean": _clean(values.mean()) if values.size else None,
            "std": _clean(values.std(ddof=1)) if values.size > 1 else (0.0 if values.size == 1 else None),
        }
    return out


def bootstrap_ci(
    y: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray = 0.5, n: int = 1000, seed: int = 0
) -> dict[str, list[float | None]]:
    """Percentile 95% intervals of every metric, resampling patients with replacement."""
    rng = np.random.default_rng(seed)
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(y),))
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        found = scores(y[idx], proba[idx], thresholds[idx])
        for m in METRICS:
            draws[m].append(found[m])
    out: dict[str, list[float | None]] = {}
    for m in METRICS:
        values = np.array(draws[m])
        values = values[np.isfinite(values)]
        out[m] = (
            [_clean(np.percentile(values, 2.5)), _clean(np.percentile(values, 97.5))] if values.size else [None, None]
        )
    return out


def confusion(y: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray = 0.5) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    return confusion_matrix(y, predict_labels(proba, threshold), labels=list(range(proba.shape[1]))).tolist()
