"""``smearmil report``: a self-contained ``report.html`` (images embedded, no server, no network) and
``report.md`` (images beside it in ``report_files/``) for a folder written by train, cv, compare,
features cv, ssl cv or predict.

The page names the positive class wherever a metric or probability depends on it, lists every patient
(misclassified first, linked to its cell gallery), shows calibration and operating points, where the
model looks (galleries, attention by cell type, UMAPs), the resolved config and the run's provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..utils.outputs import MARKER, OutputRefused, read_marker
from .folder import OutputFolder
from .galleries import Gallery, attention_galleries, model_galleries, predict_galleries
from .page import Report
from .patients import gallery_anchor, patients_section, table_order
from .results import calibration_section, classes_note, histogram_section, metrics_section
from .sections import (
    attention_section,
    choices_section,
    comparison_section,
    config_section,
    data_section,
    gallery_section,
    provenance_section,
    repeatability_section,
    training_section,
)

GALLERY_INTRO = {
    "model": "The highest and lowest contributing cells of a few test patients (misclassified first), each above "
    "its guided-backpropagation saliency (colour bar: relative saliency). The number above a cell is its signed "
    "contribution to the logit, in logit units: positive pushes the patient toward the class named in the caption.",
    "predict": "The highest and lowest contributing cells of a few patients, as the prediction listed them in "
    "cells.csv. The number above a cell is its signed contribution to the logit, in logit units: positive pushes "
    "the patient toward the class named in the caption.",
    "attention": "The cells the attention head weighs most and least for a few test patients (misclassified first). "
    "Attention is not signed: it says where the head looks, not toward which class.",
}


def build_report(
    run: str | Path,
    data: str | Path | None = None,
    galleries: int = 3,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    comparison: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``report.html`` and ``report.md`` into ``run``; returns the HTML path.

    ``comparison`` adds a table of other methods' CV summaries run on the same folds."""
    folder = OutputFolder(run)
    if not folder.path.is_dir():
        raise FileNotFoundError(f"{folder.path} is not a folder: give one written by a smearmil command")
    if read_marker(folder.path) is None:  # a report replaces report.html/.md: only in folders smearmil made
        raise OutputRefused(
            f"{folder.path} was not written by smearmil (it has no {MARKER}); the report is written only into "
            "output folders of smearmil commands, and nothing here was touched"
        )
    report = Report(folder.path)
    work = report.files
    work.mkdir(exist_ok=True)
    data_path = Path(data) if data else folder.data_path()
    cohort = data_section(report, folder, data_path)
    order = table_order(folder)
    found: list[Gallery] = []
    explained = ""
    if folder.kind == "predict":
        found, kind = predict_galleries(folder, galleries, order, work), "predict"
    elif folder.kind in ("features cv", "ssl cv"):
        found, kind = attention_galleries(folder, galleries, order, work), "attention"
    else:
        explained, found = model_galleries(folder, cohort, galleries, order, cache_dir, progress, work)
        kind = "model"
    metrics_section(report, folder, work)
    choices_section(report, folder)
    patients_section(report, folder, {g.patient: gallery_anchor(g.patient) for g in found})
    histogram_section(report, folder, work)
    calibration_section(report, folder, work)
    if comparison:
        comparison_section(report, comparison, folder.class_names)
    training_section(report, folder, work)
    repeatability_section(report, folder, work)
    attention_section(report, folder, work)
    title = "Cells the model attends to" if kind == "attention" else "Cells that drive the decision"
    intro = GALLERY_INTRO[kind] + (f" Method explained: {explained}." if folder.kind == "compare" and explained else "")
    gallery_section(report, title, intro, found)
    config_section(report, folder)
    provenance_section(report, folder)
    lead = f"Output of `smearmil {folder.kind}` in {folder.path}. {classes_note(folder.class_names)}".strip()
    html_path, _ = report.write(f"smearmil report: {folder.path.name} ({folder.kind})", lead)
    return html_path
