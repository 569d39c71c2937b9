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

from ..utils.outputs import MARKER, OutputRefused, read_marker, require_output_folder
from .folder import OutputFolder
from .galleries import Gallery, attention_galleries, model_galleries, predict_galleries
from .page import Report
from .patients import gallery_anchor, patients_section
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

SHARES = (
    "The number above a cell is its share of the patient's evidence, toward the class the patient is called: "
    "its contribution to the logit over the sum of every cell's absolute contribution, so +12% toward tumoral "
    "is a cell giving 12% of all the push the cells give, toward tumoral, and a negative share pushes the "
    "other way ({where})."
)
GALLERY_INTRO = {
    "model": "The cells that push a few test patients most toward and most against their call, each above its "
    "guided-backpropagation saliency (each cell's map scaled to its own 99th percentile, so bright is where "
    "that cell's pixels matter most). "
    + SHARES.format(where="`smearmil predict` writes each cell's raw logit contribution to cells.csv"),
    "features": "The cells that push a few test patients most toward and most against their call, by their image "
    "expert's score (it sees features computed from each cell, not its pixels: no saliency). "
    + SHARES.format(where="`smearmil predict` writes each cell's raw logit contribution to cells.csv"),
    "predict": "The cells that push a few patients most toward and most against their call, as the prediction "
    "listed them in cells.csv. " + SHARES.format(where="cells.csv keeps the raw logit contributions"),
    "attention": "The cells the attention head weighs most and least for a few test patients. Attention is not "
    "signed: it says where the head looks, not toward which class.",
}
CHOSEN = {
    True: "Patients shown: the misclassified first, then those whose call is the most uncertain, with at least "
    "one patient of each class.",
    False: "Patients shown: those whose call is the most uncertain (probability nearest the threshold), with "
    "each call among them; their true class is unknown.",
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
    require_output_folder(folder.path)
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
    found: list[Gallery] = []
    explained = ""
    if folder.kind == "predict":
        found, kind = predict_galleries(folder, galleries, work), "predict"
    elif folder.kind in ("features cv", "ssl cv"):
        found, kind = attention_galleries(folder, galleries, work), "attention"
    else:
        explained, found = model_galleries(folder, cohort, galleries, cache_dir, progress, work)
        kind = "model" if any(g.saliency for g in found) else "features"
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
    intro = f"{GALLERY_INTRO[kind]} {CHOSEN[folder.labelled]}"
    intro += f" Method explained: {explained}." if folder.kind == "compare" and explained else ""
    gallery_section(report, title, intro, found)
    config_section(report, folder)
    provenance_section(report, folder)
    note = classes_note(folder.class_names, folder.labelled)
    lead = f"Output of `smearmil {folder.kind}` in {folder.path}. {note}".strip()
    html_path, _ = report.write(f"smearmil report: {folder.path.name} ({folder.kind})", lead)
    return html_path
