"""Cross-validation by patient: one driver (``run_folds``) and the CV of any registered method (``run_cv``).

``run_folds`` writes the splits and, fold by fold, calls a ``fit_predict(fold, fold_dir)`` that trains
on the fold's training (and validation) patients and predicts its test patients; then it writes
``predictions.csv``, ``summary.json`` and the ROC and confusion plots. ``run_cv`` fits a method
(``training.methods``) in every fold and saves its predictor there, so that the folder then predicts
new patients as the mean of its fold predictors (the cached-feature CVs, ``features cv`` and ``ssl cv``,
are experts methods through it); ``compare`` goes through ``run_folds`` too, and ``run_on_same_folds``
runs several CVs on one plan.
Each fold folder holds, beside the predictor, ``experts.csv`` (per test patient: each expert's
probability and the fusion's weights or gate, for fusions) and ``choices.json`` (what the fold chose
from its training patients, where it chose anything).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cohort import Cohort
from ..data.splits import Fold, SplitPlan, make_splits
from ..evaluation.metrics import bootstrap_ci, confusion, fold_summary, per_class_f1, predict_labels, scores
from ..evaluation.plots import confusion_plot, roc_plot
from ..training.methods import FitSettings, Method
from ..training.predictor import Prediction, Predictor, is_predictor, load_one
from ..training.run_dir import RunDir
from ..utils.atomic import write_json, write_text
from ..utils.outputs import claim_output, run_fingerprint
from ..utils.progress import say, stage, stage_label
from ..utils.spreadsheet import SafeWriter, csv_text
from ..utils.threads import fit_threads


@dataclass
class FoldPredictions:
    fold: str
    predictions: list[Prediction]
    labels: np.ndarray
    threshold: float = 0.5
    threshold_source: str = "fixed"

    @property
    def proba(self) -> np.ndarray:
        return np.array([p.proba for p in self.predictions])


@dataclass
class CVResult:
    summary: dict[str, Any]
    folds: list[FoldPredictions]

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([f.labels for f in self.folds])

    @property
    def proba(self) -> np.ndarray:
        return np.concatenate([f.proba for f in self.folds])


FitPredict = Callable[[Fold, Path], FoldPredictions]
Finish = Callable[[list[FoldPredictions], dict[str, Any]], None]


@dataclass
class CVSettings:
    """How a CV runs: its folds (``folds`` new ones drawn with ``seed``, or the given ``splits``), the image
    cache, progress, and whether to replace another CV in the output folder."""

    folds: int = 5
    seed: int = 0
    splits: SplitPlan | None = None
    cache_dir: str | Path | None = None
    progress: bool = True
    overwrite: bool = False


def predictions_csv(folds: Sequence[FoldPredictions], class_names: Sequence[str]) -> str:
    """patient, fold, label, probability per class, prediction."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["patient", "fold", "label", *(f"prob_{c}" for c in class_names), "prediction"])
    for f in folds:
        predicted = predict_labels(f.proba, f.threshold) if f.predictions else np.zeros(0, np.int64)
        for p, y, k in zip(f.predictions, f.labels, predicted):
            writer.writerow([p.id, f.fold, class_names[y], *(f"{v:.6f}" for v in p.proba), class_names[k]])
    return buffer.getvalue()


def summarise(folds: Sequence[FoldPredictions], class_names: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The ``summary.json`` object: per-fold mean/std with a pooled bootstrap CI, and pooled metrics."""
    per_fold = [scores(f.labels, f.proba, f.threshold) for f in folds]
    y = np.concatenate([f.labels for f in folds])
    proba = np.concatenate([f.proba for f in folds])
    thresholds = np.concatenate([np.full(len(f.labels), f.threshold) for f in folds])
    summary_metrics, partial = fold_summary(per_fold)
    for m, (lo, hi) in bootstrap_ci(y, proba, thresholds, seed=seed).items():
        summary_metrics[m]["ci95"] = [lo, hi]
    pooled = {m: (None if not np.isfinite(v) else v) for m, v in scores(y, proba, thresholds).items()}
    return {
        "split": "test",
        "metrics": summary_metrics,
        "partial_metrics": partial,  # undefined on some test folds: the mean over the others, with counts
        "pooled": pooled,
        "per_class_f1": dict(zip(class_names, per_class_f1(y, proba, thresholds))),
        "confusion_matrix": confusion(y, proba, thresholds),
        "class_names": list(class_names),
        "positive_class": class_names[1] if len(class_names) == 2 else None,  # what sensitivity refers to
        "threshold": sorted({f.threshold_source for f in folds}),
        "folds": [
            {
                "fold": f.fold,
                "n_test": int(len(f.labels)),
                "threshold": f.threshold,
                **{m: (v if np.isfinite(v) else None) for m, v in s.items()},
            }
            for f, s in zip(folds, per_fold)
        ],
    }


def run_folds(
    cohort: Cohort,
    plan: SplitPlan,
    fit_predict: FitPredict,
    out: str | Path,
    *,
    name: str,
    seed: int = 0,
    config_text: str | None = None,
    finish: Finish | None = None,
    started: float | None = None,
    progress: bool = True,
) -> CVResult:
    """The CV driver: every fold of ``plan`` through ``fit_predict``, then predictions, summary and plots.

    ``finish(folds, summary)`` may add to the summary and write more files before ``summary.json``
    (written last: its presence marks a finished CV).
    """
    started = time.perf_counter() if started is None else started
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        write_text(run.config, config_text)
    plan.check_cohort(cohort)
    plan.check_training_classes(cohort)
    plan.save(run.splits)
    results = []
    for i, fold in enumerate(plan.folds):
        with stage(name), stage(f"fold {i + 1}/{len(plan.folds)}"):  # names every progress line of the fold
            if progress:
                say(
                    f"{stage_label()}: {fold.name}, {len(fold.train)} train, {len(fold.val)} val, "
                    f"{len(fold.test)} test patients"
                )
            results.append(fit_predict(fold, run.fold_dir(fold.name)))
    write_text(run.predictions, predictions_csv(results, cohort.class_names))
    summary = summarise(results, cohort.class_names, seed)
    _plots(results, summary, cohort.class_names, run.path)
    if finish is not None:
        finish(results, summary)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    write_json(run.summary, summary)
    return CVResult(summary, results)


def run_on_same_folds(
    plan: SplitPlan,
    out: str | Path,
    runs: Mapping[str, Callable[[], CVResult]],
    config_text: str | None = None,
    progress: bool = True,
) -> dict[str, CVResult]:
    """Several methods cross-validated on one plan (each ``runs[name]()`` calls ``run_folds`` with it, in
    a folder of its own): the plan and the config are written once in ``out``."""
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    if config_text is not None:
        write_text(run.config, config_text)
    plan.save(run.splits)
    results = {}
    for i, (name, method) in enumerate(runs.items()):
        if progress:
            say(f"{stage_label('compare')}: {name} ({i + 1}/{len(runs)})")
        results[name] = method()
    return results


def _plots(results: Sequence[FoldPredictions], summary: dict[str, Any], class_names: Sequence[str], out: Path) -> None:
    y = np.concatenate([f.labels for f in results])
    proba = np.concatenate([f.proba for f in results])
    if len(class_names) == 2:
        roc_plot({"pooled test folds": (y, proba[:, 1])}, out / "roc.png")
    confusion_plot(summary["confusion_matrix"], class_names, out / "confusion.png")


def fit_and_test(
    method: Method, cohort: Cohort, fold: Fold, fold_dir: Path, settings: FitSettings
) -> tuple[FoldPredictions, Predictor]:
    """Fit ``method`` on the fold's training patients and save its predictor in ``fold_dir`` (a finished one
    there is loaded instead: a killed CV resumes), then predict the fold's test patients."""
    if is_predictor(fold_dir):
        predictor = load_one(fold_dir)
    else:
        fit_threads()  # the cores free now: another process may have started or stopped since the last fold
        predictor = method.fit(cohort, fold, fold_dir, settings)
        predictor.save(fold_dir)
    test = list(fold.test)
    predictions = predictor.predict(cohort, test, settings.cache_dir, settings.progress, explain=False)
    if any(p.details or p.gate is not None for p in predictions):
        write_text(fold_dir / "experts.csv", experts_csv(predictions))
    if predictor.choices():
        write_json(fold_dir / "choices.json", predictor.choices())
    for name, text in method.fold_files(predictor, cohort, fold).items():
        write_text(fold_dir / name, text)
    labels = cohort.labels(test)
    return FoldPredictions(fold.name, predictions, labels, predictor.threshold, predictor.threshold_source), predictor


def experts_csv(predictions: Sequence[Prediction]) -> str:
    """Per patient: each expert's probability and the fusion's weights or gate."""
    rows = [{**p.details, **({"gate_image_expert": p.gate} if p.gate is not None else {})} for p in predictions]
    columns = sorted({k for d in rows for k in d})
    body = [[p.id, *(f"{d[c]:.6g}" if c in d else "" for c in columns)] for p, d in zip(predictions, rows)]
    return csv_text([["patient", *columns], *body])


def claim_cv(cohort: Cohort, run: RunDir, method: Method, plan: SplitPlan, overwrite: bool, kind: str = "cv") -> None:
    """Check ``plan`` against the cohort, then claim ``run`` for a CV of this method, data and plan
    (a CV of other inputs there is refused unless ``overwrite``) and record the data it reads."""
    plan.check_cohort(cohort)
    plan.check_training_classes(cohort)
    fingerprint = run_fingerprint(method.settings(), cohort.identity(), plan.to_json())
    claim_output(run.path, kind, fingerprint, overwrite, method=method.kind)
    lightning = method.lightning() if hasattr(method, "lightning") else {}
    extra = {"method": method.kind, **({"lightning": lightning} if lightning else {})}
    run.write_info(cohort.root, cohort.layout, kind.replace("-", " "), fingerprint, **extra)


AfterFolds = Callable[[dict[str, Predictor], list[FoldPredictions], dict[str, Any]], None]


def run_cv(
    cohort: Cohort,
    method: Method,
    out: str | Path,
    settings: CVSettings | None = None,
    after: AfterFolds | None = None,
    kind: str = "cv",
) -> CVResult:
    """Fit and test ``method`` in every fold; write splits, resolved config, predictions, summary and plots
    to ``out`` and each fold's predictor in its folder. Folds already finished in ``out`` are reused, so a
    killed CV resumes; ``out`` holding a CV of other inputs is refused unless ``overwrite``.
    ``after(fold predictors, folds, summary)`` may write further outputs and add to the summary; ``kind``
    is the output's kind in its marker (``features-cv``, ``ssl-cv`` for the cached-feature CVs)."""
    started = time.perf_counter()
    cv = settings or CVSettings()
    run = RunDir(out)
    method = method.for_run(cv.seed, cv.folds)
    plan = cv.splits or make_splits(cohort, "kfold", folds=cv.folds, val=method.val_share(), seed=cv.seed)
    method.check(cohort)
    claim_cv(cohort, run, method, plan, cv.overwrite, kind)
    fitted: dict[str, Predictor] = {}

    def fit_predict(fold: Fold, fold_dir: Path) -> FoldPredictions:
        fit = FitSettings(cv.seed, plan.folds.index(fold), run.path, cv.cache_dir, cv.progress)
        result, fitted[fold.name] = fit_and_test(method, cohort, fold, fold_dir, fit)
        return result

    def finish(folds: list[FoldPredictions], summary: dict[str, Any]) -> None:
        summary.update(method.summary(fitted))
        summary["method"] = method.kind
        summary["predicts_as"] = (
            f"an ensemble: the mean of its {len(folds)} fold models' probabilities (smearmil predict {run.path} DATA)"
        )
        if after is not None:
            after(fitted, folds, summary)

    return run_folds(
        cohort,
        plan,
        fit_predict,
        run.path,
        name=method.name,
        seed=cv.seed,
        config_text=method.to_yaml(),
        started=started,
        progress=cv.progress,
        finish=finish,
    )
