"""Classification scores from per-patient probabilities (used for model selection and reports)."""

from __future__ import annotations

import math
import warnings

import numpy as np

METRICS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy", "macro_f1")


def predict_labels(proba: np.ndarray, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """Class indices: for two classes, class 1 when its probability reaches ``threshold`` (one per row allowed)."""
    if proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.int64)
    return proba.argmax(axis=1)


def scores(y: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray = 0.5) -> dict[str, float]:
    """Sensitivity, specificity, accuracy, balanced accuracy, ROC-AUC and macro-F1.

    With more than two classes, sensitivity and specificity are macro-averaged one-vs-rest and
    ROC-AUC is the macro one-vs-rest AUC. A score that is undefined (one class only) is NaN.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    y = np.asarray(y, dtype=np.int64)
    n_classes = proba.shape[1]
    pred = predict_labels(proba, threshold)
    cm = confusion_matrix(y, pred, labels=list(range(n_classes)))
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.full(n_classes, np.nan), where=support > 0)
    negatives = cm.sum() - support
    true_neg = cm.sum() - cm.sum(axis=0) - support + np.diag(cm)
    specificity = np.divide(true_neg, negatives, out=np.full(n_classes, np.nan), where=negatives > 0)
    if n_classes == 2:
        sensitivity, spec = recall[1], recall[0]
    else:
        sensitivity, spec = _nanmean(recall), _nanmean(specificity)
    return {
        "balanced_accuracy": _nanmean(recall),
        "roc_auc": roc_auc(y, proba),
        "sensitivity": float(sensitivity),
        "specificity": float(spec),
        "accuracy": float((pred == y).mean()) if y.size else math.nan,
        "macro_f1": float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0)),
    }


def per_class_f1(y: np.ndarray, proba: np.ndarray, threshold: float | np.ndarray = 0.5) -> list[float]:
    from sklearn.metrics import f1_score

    n_classes = proba.shape[1]
    return f1_score(
        y, predict_labels(proba, threshold), labels=list(range(n_classes)), average=None, zero_division=0
    ).tolist()


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if present.size < 2:
        return math.nan
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    if present.size < proba.shape[1]:
        aucs = [roc_auc_score(y == c, proba[:, c]) for c in present]
        return float(np.mean(aucs))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def best_threshold(y: np.ndarray, p1: np.ndarray) -> float:
    """The threshold on P(class 1) that maximises balanced accuracy (midpoints between scores)."""
    candidates = np.unique(np.concatenate([[0.5], p1]))
    mids = np.concatenate([[0.5], (candidates[:-1] + candidates[1:]) / 2]) if candidates.size > 1 else candidates
    best, best_score = 0.5, -1.0
    for t in mids:
        s = scores(y, np.stack([1 - p1, p1], axis=1), float(t))["balanced_accuracy"]
        if s > best_score + 1e-12:
            best, best_score = float(t), s
    return best


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def resampled_scores(
    y: np.ndarray, proba: np.ndarray, thresholds: np.ndarray, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """``scores`` of every resample ``idx[b]`` (rows of patient indices) at once: the same numbers as
    ``scores(y[idx[b]], proba[idx[b]], thresholds[idx[b]])``, NaN where undefined, without a Python loop."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=np.int64)
    n_classes = proba.shape[1]
    pred = predict_labels(proba, thresholds)
    yb, pb = y[idx], pred[idx]  # (B, N)
    draws = np.arange(len(idx))[:, None]
    cm = np.zeros((len(idx), n_classes, n_classes))
    np.add.at(cm, (np.broadcast_to(draws, yb.shape), yb, pb), 1)
    diag = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted, total = cm.sum(2), cm.sum(1), cm.sum((1, 2))[:, None]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN rows: NaN, as intended
        recall = np.where(support > 0, diag / support, np.nan)
        true_neg = total - predicted - support + diag
        specificity = np.where(total - support > 0, true_neg / (total - support), np.nan)
        denominator = 2 * diag + (predicted - diag) + (support - diag)
        f1 = np.where(denominator > 0, 2 * diag / denominator, 0.0)
        balanced = np.where(np.isfinite(recall).any(1), np.nanmean(recall, 1), np.nan)
        if n_classes == 2:
            sensitivity, spec = recall[:, 1], recall[:, 0]
        else:
            sensitivity = np.where(np.isfinite(recall).any(1), np.nanmean(recall, 1), np.nan)
            spec = np.where(np.isfinite(specificity).any(1), np.nanmean(specificity, 1), np.nan)
        aucs = []
        columns = [1] if n_classes == 2 else range(n_classes)
        for c in columns:  # one-vs-rest AUC by ranks (ties averaged), macro over the classes present
            positive = yb == c
            ranks = rankdata(proba[idx, c], axis=1)
            n_pos, n_neg = positive.sum(1), (~positive).sum(1)
            u = (ranks * positive).sum(1) - n_pos * (n_pos + 1) / 2
            aucs.append(np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan))
        auc = np.stack(aucs, 1)
        present = (support > 0).sum(1)
        roc = auc[:, 0] if n_classes == 2 else np.where(present >= 2, np.nanmean(auc, 1), np.nan)
        roc = np.where(present >= 2, roc, np.nan)
    return {
        "balanced_accuracy": balanced,
        "roc_auc": roc,
        "sensitivity": sensitivity,
        "specificity": spec,
        "accuracy": diag.sum(1) / total[:, 0],
        "macro_f1": f1.mean(1),
    }
