"""Results of a report: metrics with the positive class named, ROC and confusion, the distribution of
predicted probabilities, calibration and the operating points at several thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.metrics import displayed_metrics, folds_note
from ..evaluation.plots import calibration_plot, confusion_plot, probability_histogram, roc_plot
from ..utils.scoring import METRICS
from .folder import Method, OutputFolder, PatientRow
from .page import Cell, Report

GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def metric_labels(class_names: list[str]) -> dict[str, str]:
    """Column names of the metrics, naming the positive class of a binary task."""
    if len(class_names) == 2:
        neg, pos = class_names
        return {
            "balanced_accuracy": "balanced accuracy",
            "roc_auc": f"ROC-AUC (score: P({pos}))",
            "sensitivity": f"sensitivity (positive class: {pos})",
            "specificity": f"specificity (negative class: {neg})",
            "accuracy": "accuracy",
            "macro_f1": "macro-F1",
        }
    return {
        "balanced_accuracy": "balanced accuracy",
        "roc_auc": "ROC-AUC (macro, one vs rest)",
        "sensitivity": "sensitivity (macro over classes)",
        "specificity": "specificity (macro, one vs rest)",
        "accuracy": "accuracy",
        "macro_f1": "macro-F1",
    }


def classes_note(class_names: list[str], labelled: bool = True) -> str:
    """One sentence that names the positive class (binary) or says how metrics average (multi-class); for
    patients of unknown class, what the probabilities are."""
    if not labelled:
        unknown = "The true class of these patients is unknown, so there are no metrics"
        if len(class_names) == 2:
            return f"{unknown}; probabilities are P({class_names[1]})."
        return f"{unknown}; classes: {', '.join(class_names)}." if class_names else f"{unknown}."
    if len(class_names) == 2:
        neg, pos = class_names
        return (
            f"Positive class: {pos}. Sensitivity is the share of {pos} patients called {pos}; specificity the "
            f"share of {neg} patients called {neg}; probabilities are P({pos})."
        )
    if class_names:
        return (
            f"Classes: {', '.join(class_names)}. Sensitivity and specificity are averaged over the classes "
            "(each class against the others)."
        )
    return ""


def fmt(cell: Any) -> str:
    if isinstance(cell, dict):
        if cell.get("mean") is None:
            return "-"
        return f"{cell['mean']:.3f} ± {cell.get('std') or 0:.3f}{folds_note(cell)}"
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return f"{cell:.3f}"
    return "-" if cell is None else str(cell)


def known(rows: list[PatientRow]) -> list[PatientRow]:
    return [r for r in rows if r.truth is not None]


def metrics_section(report: Report, folder: OutputFolder, work: Path) -> None:
    """Metrics (per split, over folds, per method or of a labelled predict cohort), ROC and confusion."""
    names = folder.class_names
    labels = metric_labels(names)
    summary, metrics = folder.summary, folder.metrics
    if not (summary or metrics or folder.labelled):
        return  # new patients: nothing to judge the predictions by
    title = "Results (patients of known class)" if folder.kind == "predict" else "Results (test patients)"
    s = report.section(title)
    if summary and "methods" in summary:
        report.table(
            s,
            ["method", "data", *(labels[m] for m in METRICS)],
            [
                [name, str(m.get("data", "")), *(fmt(m["metrics"].get(k)) for k in METRICS)]
                for name, m in summary["methods"].items()
            ],
        )
        report.text(s, f"{summary['folds']}-fold cross-validation by patient; mean ± std over the test folds.")
    elif summary and folder.kind != "predict":
        rows = [["test folds, mean ± std", *(fmt(displayed_metrics(summary)[k]) for k in METRICS)]]
        if summary.get("pooled"):
            rows.append(["pooled test predictions", *(fmt(summary["pooled"].get(k)) for k in METRICS)])
        report.table(s, ["", *(labels[m] for m in METRICS)], rows)
        folds = summary.get("folds")
        count = f"{len(folds)}-fold" if isinstance(folds, list) else "repeated"
        sources = ", ".join(summary.get("threshold") or []) or "fixed"
        report.text(s, f"{count} cross-validation by patient; thresholds: {sources}.")
    elif summary:  # predict on a labelled cohort
        cells = summary.get("metrics") or summary
        report.table(s, [labels[m] for m in METRICS], [[fmt(cells.get(m)) for m in METRICS]])
        if summary.get("split"):
            report.text(s, f"Patients scored: {summary['split']}.")
    elif metrics:
        report.table(
            s,
            ["split", *(labels[m] for m in METRICS)],
            [
                [f"{k} ({v['n_patients']} patients)", *(fmt(v["metrics"].get(m)) for m in METRICS)]
                for k, v in metrics["splits"].items()
            ],
        )
        if not metrics["splits"].get("test", {}).get("n_patients"):
            report.text(
                s,
                "No test patients: this model trained on every labelled patient (`train --all`); judge it by a "
                "cross-validation of the same config, and use it with `smearmil predict`.",
                note=True,
            )
    methods = [m for m in folder.methods if len({r.truth for r in known(m.rows)}) > 1]
    if not (summary or metrics):
        labelled = len(known(folder.methods[0].rows)) if folder.methods else 0
        report.text(
            s,
            f"No metrics were written; the curves below use the {labelled} patients whose class is given."
            if methods
            else "Too few patients of known class for metrics: every class must be among them.",
            note=True,
        )
    if len(names) == 2 and methods:
        curves = {_curve_name(folder, m): _y_p(known(m.rows), names) for m in methods}
        report.image(
            s,
            roc_plot(curves, work / "roc.png", "ROC, " + _pooled(folder), positive=names[1]),
            f"ROC curve of P({names[1]}), {_pooled(folder)}",
        )
    elif (folder.path / "roc.png").is_file():
        report.image(s, folder.path / "roc.png", "ROC curves, pooled test predictions")
    if folder.kind != "compare" and methods:
        index = {c: i for i, c in enumerate(names)}
        matrix = np.zeros((len(names), len(names)), dtype=int)
        for r in known(methods[0].rows):
            matrix[index[r.truth or ""]][index[r.prediction]] += 1
        report.image(
            s,
            confusion_plot(matrix.tolist(), names, work / "confusion.png", "confusion, " + _pooled(folder)),
            f"confusion matrix (rows: true class, columns: predicted), {_pooled(folder)}",
        )


def _pooled(folder: OutputFolder) -> str:
    return {"train": "test patients", "predict": "patients of known class"}.get(folder.kind, "pooled test folds")


def _curve_name(folder: OutputFolder, method: Method) -> str:
    return method.name if folder.kind == "compare" else _pooled(folder)


def _y_p(rows: list[PatientRow], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.truth == names[1] for r in rows], dtype=int), np.array([r.proba[names[1]] for r in rows])


def histogram_section(report: Report, folder: OutputFolder, work: Path) -> None:
    """How the predicted probabilities spread, by true class when it is known."""
    if folder.kind == "compare" or not folder.methods:
        return
    rows, names = folder.methods[0].rows, folder.class_names
    s = report.section("Predicted probabilities")
    if len(names) == 2:
        values = np.array([r.proba[names[1]] for r in rows])
        xlabel, what = f"P({names[1]})", f"P({names[1]}) of every patient"
    else:
        values = np.array([r.proba[r.prediction] for r in rows])
        xlabel, what = "P(predicted class)", "the probability of each patient's predicted class"
    if any(r.truth is not None for r in rows):
        groups, legend = [r.truth or "unknown" for r in rows], "true class"
    else:
        groups, legend = [r.prediction for r in rows], "predicted class"
    png = probability_histogram(values, groups, work / "probabilities.png", xlabel, legend, "predicted probabilities")
    report.image(s, png, f"histogram of {what}, coloured by {legend}")


def operating_points(
    y: np.ndarray, p: np.ndarray, thresholds: list[float]
) -> list[tuple[float, float | None, float | None, int, int]]:
    """Per threshold on P(positive): sensitivity, specificity, positives missed, negatives flagged."""
    out = []
    for t in thresholds:
        called = p >= t
        pos, neg = y == 1, y == 0
        sens = float(called[pos].mean()) if pos.any() else None
        spec = float((~called[neg]).mean()) if neg.any() else None
        out.append((t, sens, spec, int((pos & ~called).sum()), int((neg & called).sum())))
    return out


def calibration_section(report: Report, folder: OutputFolder, work: Path) -> None:
    """Reliability diagram and operating points (binary tasks with known classes)."""
    names = folder.class_names
    methods = [m for m in folder.methods if len({r.truth for r in known(m.rows)}) > 1]
    if not methods:
        return
    s = report.section("Calibration and operating points")
    if len(names) != 2:
        report.text(
            s,
            f"Calibration curves and operating points need a positive class: this task has {len(names)} "
            "classes, so they are left out.",
            note=True,
        )
        return
    neg, pos = names
    curves = {_curve_name(folder, m): _y_p(known(m.rows), names) for m in methods}
    bins = 5 if min(len(y) for y, _ in curves.values()) < 100 else 10
    png = calibration_plot(curves, work / "calibration.png", pos, bins, "calibration, " + _pooled(folder))
    report.image(
        s,
        png,
        f"reliability diagram: observed share of {pos} patients per bin of predicted P({pos}); below it, "
        "the patients in each bin",
    )
    if folder.kind == "compare":
        report.text(s, "Operating points of each method are in the report of its own folder (methods/).", note=True)
        return
    y, p = curves[_curve_name(folder, methods[0])]
    chosen = folder.thresholds()
    header = [
        f"threshold on P({pos})",
        f"sensitivity (positive class: {pos})",
        f"specificity (negative class: {neg})",
        f"{pos} patients missed",
        f"{neg} patients called {pos}",
        "note",
    ]
    rows: list[list[str | Cell]] = []
    classes = []
    for t, sens, spec, missed, flagged in operating_points(y, p, sorted(set(GRID) | set(chosen))):
        mark = "model's threshold" if any(abs(t - c) < 1e-9 for c in chosen) else ""
        rows.append([f"{t:.3g}", fmt(sens), fmt(spec), str(missed), str(flagged), mark])
        classes.append("chosen" if mark else "")
    report.table(s, header, rows, row_classes=classes)
    report.text(
        s,
        f"A patient is called {pos} when P({pos}) reaches the threshold. "
        + (
            f"The model's threshold ({', '.join(f'{c:.3g}' for c in chosen)}) is marked."
            if chosen
            else "The model's threshold is not recorded in this folder."
        )
        + f" {len(y)} patients: {int(y.sum())} {pos}, {int(len(y) - y.sum())} {neg}.",
        note=True,
    )
