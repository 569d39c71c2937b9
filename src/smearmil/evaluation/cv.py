"""Cross-validation: train and evaluate every fold on patient-level splits; predictions and summary."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cache import ImageCache, build_cache
from ..data.cohort import Cohort
from ..data.splits import SplitPlan, make_splits
from ..training.config import RunConfig
from ..training.fit import train_fold
from ..training.trained import PatientPrediction
from ..utils.atomic import write_json, write_text
from ..utils.progress import console
from .metrics import bootstrap_ci, confusion, fold_summary, per_class_f1, predict_labels, scores
from .plots import confusion_plot, roc_plot

log = logging.getLogger(__name__)


@dataclass
class FoldPredictions:
    fold: str
    predictions: list[PatientPrediction]
    labels: np.ndarray
    threshold: float
    threshold_source: str

    @property
    def proba(self) -> np.ndarray:
        return np.array([p.proba for p in self.predictions])


def image_cache(cohort: Cohort, config: RunConfig, cache_dir: str | Path | None, progress: bool) -> ImageCache | None:
    if not config.model.uses_images:
        return None
    return build_cache(cohort, config.image.preprocessing, cache_dir, progress=progress)


def predictions_csv(folds: Sequence[FoldPredictions], class_names: Sequence[str]) -> str:
    """patient, fold, label, probability per class, prediction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient", "fold", "label", *(f"prob_{c}" for c in class_names), "prediction"])
    for f in folds:
        predicted = predict_labels(f.proba, f.threshold) if f.predictions else []
        for p, y, k in zip(f.predictions, f.labels, predicted):
            writer.writerow([p.id, f.fold, class_names[y], *(f"{v:.6f}" for v in p.proba), class_names[k]])
    return buffer.getvalue()


def summarise(folds: Sequence[FoldPredictions], class_names: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The ``summary.json`` object: per-fold mean/std with a pooled bootstrap CI, and pooled metrics."""
    per_fold = [scores(f.labels, f.proba, f.threshold) for f in folds]
    y = np.concatenate([f.labels for f in folds])
    proba = np.concatenate([f.proba for f in folds])
    thresholds = np.concatenate([np.full(len(f.labels), f.threshold) for f in folds])
    summary_metrics = fold_summary(per_fold)
    for m, (lo, hi) in bootstrap_ci(y, proba, thresholds, seed=seed).items():
        summary_metrics[m]["ci95"] = [lo, hi]
    pooled = {m: (None if not np.isfinite(v) else v) for m, v in scores(y, proba, thresholds).items()}
    return {
        "split": "test",
        "metrics": summary_metrics,
        "pooled": pooled,
        "per_class_f1": dict(zip(class_names, per_class_f1(y, proba, thresholds))),
        "confusion_matrix": confusion(y, proba, thresholds),
        "class_names": list(class_names),
        "threshold": sorted({f.threshold_source for f in folds}),
        "folds": [{"fold": f.fold, "n_test": int(len(f.labels)), "threshold": f.threshold,
                   **{m: (v if np.isfinite(v) else None) for m, v in s.items()}} for f, s in zip(folds, per_fold)],
    }


def run_cv(cohort: Cohort, config: RunConfig, out: str | Path, folds: int = 5, seed: int = 0,
           cache_dir: str | Path | None = None, splits: SplitPlan | None = None, progress: bool = True) -> dict[str, Any]:
    """Train and test every fold; write splits, resolved config, predictions, summary and plots to ``out``.

    Folds already trained in ``out`` are reused, so a killed CV resumes where it stopped.
    """
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config.model_copy(update={"seed": seed, "split": config.split.model_copy(update={"folds": folds})})
    write_text(out / "config.yaml", config.to_yaml())
    write_json(out / "run.json", {"data": str(cohort.root), "layout": cohort.layout, "command": "cv"})
    plan = splits or make_splits(cohort, "kfold", folds=folds, val=config.split.val, seed=seed)
    plan.check_cohort(cohort)
    plan.save(out / "splits.json")
    cache = image_cache(cohort, config, cache_dir, progress)
    results = []
    for i, fold in enumerate(plan.folds):
        if progress:
            console.print(f"[bold]{config.name}[/]: fold {i + 1}/{len(plan.folds)} ({fold.name}: "
                          f"{len(fold.train)} train, {len(fold.val)} val, {len(fold.test)} test patients)")
        trained = train_fold(cohort, fold, config, out / fold.name, cache, progress)
        predictions = trained.predict_cohort(cohort, list(fold.test), cache)
        results.append(FoldPredictions(fold.name, predictions, cohort.labels(list(fold.test)), trained.threshold,
                                       trained.threshold_source))
        if any(p.gate is not None for p in predictions):
            write_text(out / fold.name / "gates.csv", "patient,gate_image_expert\n" +
                       "".join(f"{p.id},{p.gate:.6f}\n" for p in predictions))
    write_text(out / "predictions.csv", predictions_csv(results, cohort.class_names))
    summary = summarise(results, cohort.class_names, seed)
    summary["wall_seconds"] = round(time.perf_counter() - start, 2)
    write_json(out / "summary.json", summary)
    _plots(results, summary, cohort.class_names, out)
    return summary


def _plots(results: Sequence[FoldPredictions], summary: dict[str, Any], class_names: Sequence[str], out: Path) -> None:
    y = np.concatenate([f.labels for f in results])
    proba = np.concatenate([f.proba for f in results])
    if len(class_names) == 2:
        roc_plot({"pooled test folds": (y, proba[:, 1])}, out / "roc.png")
    confusion_plot(summary["confusion_matrix"], class_names, out / "confusion.png")
