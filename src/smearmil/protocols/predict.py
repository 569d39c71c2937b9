"""Predict a cohort of new patients with any saved predictor (a final model, or a CV folder as the ensemble
of its fold predictors): probabilities, what each expert said, and each cell's signed contribution.

A cell's contribution is its share of the patient's logit toward ``toward_class`` (for two classes the
positive class, ``class_names[1]``; otherwise the predicted class): positive pushes toward it, negative
away, in logit units (see ``smearmil.models.contributions``): for a deep model its image expert's, for
experts on cell features the image expert's (for the instance-level MIL, each cell's share of the
patient's score). An ensemble averages its models' probabilities, gates, details and contributions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cohort import UNKNOWN_CELL_TYPE, Cohort
from ..training.predictor import (
    Prediction,
    Predictor,
    kind_of_predictor,
    load_predictor,
    members_of,
    model_names,
)
from ..training.run_dir import RunDir

log = logging.getLogger(__name__)
__all__ = ["Prediction", "Predictor", "load_predictor", "predict_to"]


def detail_columns(predictions: Sequence[Prediction]) -> list[str]:
    """The columns of what the parts of a fusion said (each expert's probability, the fusion's weights)."""
    return sorted({k for p in predictions for k in p.details if k != "gate_image_expert"})


def predictions_table(predictor: Predictor, cohort: Cohort, predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """One row per patient: id, true label (empty when unknown), probability per class, prediction, gate,
    the model(s) used, then each expert's probability and the fusion's weights (experts configs)."""
    from ..utils.scoring import predict_labels

    rows = []
    names = model_names(predictor)
    details = detail_columns(predictions)
    for p in predictions:
        truth = cohort[p.id].label if p.id in cohort else None
        predicted = int(predict_labels(p.proba[None], predictor.threshold)[0])
        rows.append(
            {
                "patient": p.id,
                "label": truth if truth is not None else "",
                **{f"prob_{c}": round(float(v), 6) for c, v in zip(predictor.class_names, p.proba)},
                "prediction": predictor.class_names[predicted],
                "gate_image_expert": "" if p.gate is None else round(p.gate, 6),
                "models": names,
                **{k: (round(p.details[k], 6) if k in p.details else "") for k in details},
            }
        )
    return rows


def cells_table(predictor: Predictor, predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """One row per readable cell: patient, file, cell type, the class its contribution is toward, and the
    signed contribution (logit units; positive pushes the patient toward ``toward_class``)."""
    rows = []
    for p in predictions:
        found = p.contribution()
        if found is None or p.files is None:
            continue
        toward = predictor.class_names[predictor.toward(p.proba)]
        types = p.cell_types or [UNKNOWN_CELL_TYPE] * len(p.files)
        for file, kind, value in zip(p.files, types, found):
            rows.append(
                {
                    "patient": p.id,
                    "file": file,
                    "cell_type": kind,
                    "toward_class": toward,
                    "logit_contribution_toward_class": round(float(value), 6),
                }
            )
    return rows


def _csv(rows: list[dict[str, Any]], header: list[str]) -> str:
    """CSV text of ``rows``, its users' text safe to open in a spreadsheet (``utils.spreadsheet``)."""
    import csv
    import io

    from ..utils.spreadsheet import safe_dict

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(safe_dict(row) for row in rows)
    return buffer.getvalue()


def trained_on(predictor: Predictor, cohort: Cohort) -> set[str]:
    """The cohort's patients whose id is among the training (or validation) patients of the predictor's
    model(s): judged by id, so a renamed copy escapes, but a cohort with one patient more or less does not."""
    if predictor.source is None:
        return set()
    plans = [RunDir(predictor.source).splits, *sorted(Path(predictor.source).glob("seed-*/splits.json"))]
    seen = {p for path in plans if path.is_file() for f in RunDir(path.parent).plan().folds for p in (*f.train, *f.val)}
    return seen & set(cohort.ids)


def predict_to(
    predictor: Predictor,
    cohort: Cohort,
    out: str | Path,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Predict every patient of ``cohort`` and write ``predictions.csv``, ``cells.csv``, ``run.json`` and,
    when some patients have labels, ``summary.json`` (metrics on those patients, named); the result's
    ``files`` names what was written."""
    from ..evaluation.metrics import confusion
    from ..utils.atomic import write_json, write_text
    from ..utils.outputs import claim_output, digest, run_fingerprint
    from ..utils.scoring import METRICS, scores

    out = Path(out)
    ids = cohort.ids
    if not ids:
        raise ValueError(f"{cohort.root}: no patient with a readable image to predict")
    source = Path(predictor.source or ".")
    fingerprint = run_fingerprint({"model": str(source.resolve())}, cohort.identity())
    claim_output(out, "predict", fingerprint, overwrite)
    predictions = predictor.predict(cohort, ids, cache_dir, progress)
    rows = predictions_table(predictor, cohort, predictions)
    header = ["patient", "label", *(f"prob_{c}" for c in predictor.class_names), "prediction"]
    header += ["gate_image_expert", "models", *detail_columns(predictions)]
    write_text(out / "predictions.csv", _csv(rows, header))
    cells = cells_table(predictor, predictions)
    cell_header = ["patient", "file", "cell_type", "toward_class", "logit_contribution_toward_class"]
    write_text(out / "cells.csv", _csv(cells, cell_header))
    files = ["predictions.csv", "cells.csv"]
    model_config = RunDir(source).config
    if model_config.is_file():
        write_text(RunDir(out).config, model_config.read_text(encoding="utf-8"))
        files.append(RunDir(out).config.name)
    labelled = [i for i, p in enumerate(predictions) if cohort[p.id].label is not None]
    seen = trained_on(predictor, cohort)
    result: dict[str, Any] = {
        "model": str(source),
        "model_kind": kind_of_predictor(predictor),
        "method": members_of(predictor)[0][1].method,
        "models": model_names(predictor),
        "class_names": predictor.class_names,
        "positive_class": predictor.class_names[1] if len(predictor.class_names) == 2 else None,
        "threshold": predictor.threshold,
        "n_patients": len(predictions),
        "n_cells": len(cells),
        "n_labelled": len(labelled),
        "patients_the_model_trained_on": len(seen),
        "contribution": "logit units; positive pushes the patient toward toward_class",
    }
    if labelled:
        if cohort.class_names != predictor.class_names:
            raise ValueError(
                f"the model predicts {predictor.class_names} but {cohort.root} has classes {cohort.class_names}; "
                "name them with --class-names"
            )
        y = np.array([cohort.class_names.index(str(cohort[predictions[i].id].label)) for i in labelled])
        proba = np.stack([predictions[i].proba for i in labelled])
        found = scores(y, proba, predictor.threshold)
        result.update(
            split=f"all {len(labelled)} labelled patients of {cohort.root}"
            + (f" ({len(seen)} of them among the model's training patients, by id: not a test)" if seen else ""),
            metrics={m: (float(found[m]) if np.isfinite(found[m]) else None) for m in METRICS},
            confusion_matrix=confusion(y, proba, predictor.threshold),
        )
        write_json(out / "summary.json", result)
        files.append("summary.json")
    RunDir(out).write_info(cohort.root, cohort.layout, "predict", fingerprint, model=str(source))
    result["files"] = [*files, RunDir(out).info.name]  # names inside ``out``
    result["patients"] = rows
    result["fingerprint"] = digest(fingerprint)
    return result
