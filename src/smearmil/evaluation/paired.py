"""Two cross-validations of the same patients on the same folds, compared pair by pair.

Small cohorts make two methods' means differ by chance: one patient moves balanced accuracy by several
points. What tells them apart is the paired difference: fold by fold (same test patients), and over
patients by a bootstrap that resamples the patients once for both methods (within each class, so every
resample has both), averaging each resample's difference over the seeds.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.scoring import resampled_scores

METRICS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity")
PREDICTIONS = "predictions.csv"


@dataclass(frozen=True)
class SeedPredictions:
    """One CV's test-fold predictions: per patient its class, probabilities, call and fold."""

    patients: tuple[str, ...]
    y: np.ndarray  # (n,) class indices
    proba: np.ndarray  # (n, C)
    calls: np.ndarray  # (n,) class indices the CV called (each fold's own threshold)
    folds: tuple[str, ...]


def read_cv(folder: str | Path) -> tuple[list[str], dict[str, SeedPredictions]]:
    """A `cv` folder's class names and predictions per seed (``seed-<s>/`` of a repeated CV, else one)."""
    folder = Path(folder)
    summary = folder / "summary.json"
    if not summary.is_file():
        raise FileNotFoundError(f"{folder}: no summary.json; give a folder written by `smearmil cv`")
    classes = [str(c) for c in json.loads(summary.read_text(encoding="utf-8"))["class_names"]]
    seeds = sorted(folder.glob("seed-*/" + PREDICTIONS))
    files = {p.parent.name.removeprefix("seed-"): p for p in seeds} or {"": folder / PREDICTIONS}
    return classes, {seed: _read_predictions(path, classes) for seed, path in files.items()}


def _read_predictions(path: Path, classes: list[str]) -> SeedPredictions:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the CV did not finish")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("label") in classes]
    if not rows:
        raise ValueError(f"{path}: no labelled patient")
    index = {c: k for k, c in enumerate(classes)}
    try:
        proba = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
        calls = np.array([index[r["prediction"]] for r in rows])
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a `smearmil cv` predictions file ({error})") from None
    return SeedPredictions(
        tuple(r["patient"] for r in rows),
        np.array([index[r["label"]] for r in rows]),
        proba,
        calls,
        tuple(r.get("fold", "") for r in rows),
    )


def _aligned(a: SeedPredictions, b: SeedPredictions, seed: str) -> tuple[SeedPredictions, np.ndarray]:
    """``b`` in ``a``'s patient order; refuses other patients or other folds."""
    where = {p: k for k, p in enumerate(b.patients)}
    if set(where) != set(a.patients):
        raise ValueError(f"seed {seed or '(single)'}: the two CVs tested other patients; run both on one cohort")
    order = np.array([where[p] for p in a.patients])
    if [b.folds[k] for k in order] != list(a.folds):
        raise ValueError(
            f"seed {seed or '(single)'}: the two CVs used other folds; run both with the same --seeds and --folds"
        )
    return a, order


def _draws(y: np.ndarray, proba: np.ndarray, calls: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric on every resample ``idx``: calls for the thresholded metrics, probabilities for ROC-AUC."""
    onehot = np.eye(proba.shape[1])[calls]
    thresholds = np.full(len(y), 0.5)
    out = resampled_scores(y, onehot, thresholds, idx)
    out["roc_auc"] = resampled_scores(y, proba, thresholds, idx)["roc_auc"]
    return out


def _stratified(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` resamples of the patients, with replacement within each class."""
    parts = [np.flatnonzero(y == c) for c in np.unique(y)]
    return np.hstack([rng.choice(part, (n, len(part))) for part in parts])


def paired_comparison(first: str | Path, second: str | Path, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``first`` minus ``second`` (two `cv` folders of one cohort and one set of folds): per metric the
    mean over test folds of each, the mean per-fold difference and how many folds each wins, and a 95%
    bootstrap interval of the difference over patients (averaged over the seeds)."""
    classes_a, runs_a = read_cv(first)
    classes_b, runs_b = read_cv(second)
    if classes_a != classes_b:
        raise ValueError(f"{first} and {second} have other classes ({classes_a} vs {classes_b})")
    if set(runs_a) != set(runs_b):
        raise ValueError(
            f"{first} has seeds {sorted(runs_a)}, {second} {sorted(runs_b)}: run both with the same --seeds"
        )
    rng = np.random.default_rng(seed)
    per_fold: dict[str, list[tuple[float, float]]] = {m: [] for m in METRICS}
    boot = {m: np.zeros(resamples) for m in METRICS}
    for s in sorted(runs_a):
        a, order = _aligned(runs_a[s], runs_b[s], s)
        b = runs_b[s]
        b_proba, b_calls = b.proba[order], b.calls[order]
        for fold in sorted(set(a.folds)):
            rows = np.flatnonzero(np.array(a.folds) == fold)[None, :]
            fa = _draws(a.y, a.proba, a.calls, rows)
            fb = _draws(a.y, b_proba, b_calls, rows)
            for m in METRICS:
                per_fold[m].append((float(fa[m][0]), float(fb[m][0])))
        idx = _stratified(a.y, resamples, rng)
        da, db = _draws(a.y, a.proba, a.calls, idx), _draws(a.y, b_proba, b_calls, idx)
        for m in METRICS:
            boot[m] += (da[m] - db[m]) / len(runs_a)
    metrics = {}
    for m in METRICS:
        pairs = np.array([p for p in per_fold[m] if np.isfinite(p).all()])
        diff = pairs[:, 0] - pairs[:, 1] if len(pairs) else np.zeros(0)
        finite = boot[m][np.isfinite(boot[m])]
        metrics[m] = {
            "first": _round(pairs[:, 0].mean()) if len(pairs) else None,
            "second": _round(pairs[:, 1].mean()) if len(pairs) else None,
            "difference": _round(diff.mean()) if len(diff) else None,
            "folds": int(len(diff)),
            "first_better": int((diff > 0).sum()),
            "second_better": int((diff < 0).sum()),
            "ci95": [_round(np.percentile(finite, 2.5)), _round(np.percentile(finite, 97.5))] if finite.size else None,
        }
    n = len(next(iter(runs_a.values())).patients)
    return {
        "first": str(first),
        "second": str(second),
        "seeds": sorted(runs_a),
        "patients": n,
        "split": "test folds",
        "resamples": resamples,
        "metrics": metrics,
    }


def _round(value: float) -> float:
    return round(float(value), 4) + 0.0  # no negative zero
