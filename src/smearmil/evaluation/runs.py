"""Single runs: train on a hold-out split and report per split; evaluate a run; predict new patients."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.adhoc import cohort_from_folders
from ..data.cohort import Cohort
from ..data.splits import SplitPlan, make_splits
from ..data.validation import check_cohort_images
from ..training.config import RunConfig
from ..training.fit import train_fold
from ..training.run_dir import RunDir
from ..training.trained import PatientPrediction, TrainedModel
from ..utils.atomic import write_json, write_text
from ..utils.outputs import claim_output, run_fingerprint
from ..utils.scoring import predict_labels
from .cv import FoldPredictions, image_cache, predictions_csv
from .metrics import confusion, scores

log = logging.getLogger(__name__)


def _split_report(
    trained: TrainedModel, cohort: Cohort, ids: Sequence[str], cache: Any, split: str
) -> tuple[dict[str, Any], FoldPredictions]:
    predictions = trained.predict_cohort(cohort, list(ids), cache)
    labels = cohort.labels(list(ids))
    result = FoldPredictions(split, predictions, labels, trained.threshold, trained.threshold_source)
    found = scores(labels, result.proba, trained.threshold) if len(ids) else {}
    report = {
        "split": split,
        "n_patients": len(ids),
        "threshold": trained.threshold,
        "threshold_source": trained.threshold_source,
        "metrics": {k: (v if np.isfinite(v) else None) for k, v in found.items()},
        "confusion_matrix": confusion(labels, result.proba, trained.threshold) if len(ids) else [],
    }
    return report, result


def train_run(
    cohort: Cohort,
    config: RunConfig,
    out: str | Path,
    splits: SplitPlan | None = None,
    fold: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train on one split (hold-out from the config, or a fold of a splits file) and report val and test.

    ``out`` resumes only a run of the same inputs; another one is refused unless ``overwrite``."""
    start = time.perf_counter()
    run = RunDir(out)
    plan = splits or make_splits(cohort, "holdout", val=config.split.val, test=config.split.test, seed=config.seed)
    plan.check_cohort(cohort)
    chosen = plan.fold(fold)
    plan.check_training_classes(cohort)
    fingerprint = run_fingerprint(config.model_dump(mode="json"), cohort.identity(), plan.to_json(), fold=chosen.name)
    claim_output(run.path, "train", fingerprint, overwrite)
    plan.save(run.splits)
    run.write_info(cohort.root, cohort.layout, "train")
    cache = image_cache(cohort, config, cache_dir, progress)
    trained = train_fold(cohort, chosen, config, run.path, cache, progress)
    reports = {}
    test_predictions = None
    for split, ids in (("val", chosen.val), ("test", chosen.test)):
        reports[split], predictions = _split_report(trained, cohort, ids, cache, split)
        if split == "test":
            test_predictions = predictions
    assert test_predictions is not None
    write_text(run.predictions, predictions_csv([test_predictions], cohort.class_names))
    result = {"fold": chosen.name, "splits": reports, "wall_seconds": round(time.perf_counter() - start, 2)}
    write_json(run.metrics, result)
    return result


def evaluate_run(
    run: str | Path, cohort: Cohort, split: str = "test", cache_dir: str | Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Evaluate a trained run on ``cohort``: on the run's own ``split`` when the cohort is the one it was
    trained on, or on every labelled patient with ``split="all"`` (e.g. an external cohort)."""
    folder = RunDir(run)
    trained = TrainedModel.load(folder.path)
    if trained.class_names != cohort.class_names:
        raise ValueError(f"the run predicts {trained.class_names} but the cohort has classes {cohort.class_names}")
    if split == "all":
        ids = [p.id for p in cohort.labelled()]
    else:
        plan = folder.plan()
        plan.check_cohort(cohort, str(folder.splits))
        ids = list(folder.own_fold(plan).sets()[split])
    cache = image_cache(cohort, trained.config, cache_dir, progress)
    report, _ = _split_report(trained, cohort, ids, cache, split)
    return report


def predict_folders(
    run: str | Path, folders: Sequence[str | Path], attributes_csv: str | Path | None = None, top: int = 10
) -> list[dict[str, Any]]:
    """Probability, predicted class and the cells ranked by their weight, for each patient folder.

    Unreadable images (empty, truncated, not an image) are skipped; each patient's entry lists them
    under ``skipped``, and a patient with no readable image is left out with a warning."""
    trained = TrainedModel.load(run)
    cohort = cohort_from_folders(folders, attributes_csv, trained.config.data)
    before = {p.id: list(p.images) for p in cohort.patients}
    if trained.uses_images:
        check_cohort_images(cohort, drop_duplicates=False, progress=False)
        for problem in cohort.problems:
            if problem.kind in ("unreadable_image", "empty_bag"):
                log.warning("%s: %s", problem.where, problem.message)
    kept = {p.id: set(p.images) for p in cohort.patients}
    skipped = {pid: [str(i) for i in images if i not in kept.get(pid, set())] for pid, images in before.items()}
    ids = cohort.ids
    if trained.encoder.names:
        missing = [n for n in trained.encoder.names if n not in cohort.attribute_names]
        if missing:
            raise ValueError(
                f"this model needs attributes {trained.encoder.names}; give them with --attributes CSV "
                f"(missing: {missing})"
            )
        attributes = trained.encoder.transform(cohort, ids)
    else:
        attributes = np.zeros((len(ids), 0), np.float32)
    prep = trained.config.image.preprocessing
    bags = [
        np.stack([prep.load(p.read_bytes(), p.name) for p in cohort[i].images]) if trained.uses_images else None
        for i in ids
    ]
    if not ids:
        raise ValueError(
            "no patient could be predicted: every folder given holds no readable image (see the warnings above)"
        )
    predictions = trained.predict_arrays(ids, bags, attributes)
    return [{**_describe(p, cohort, trained, top), "skipped": skipped.get(p.id, [])} for p in predictions]


def _describe(p: PatientPrediction, cohort: Cohort, trained: TrainedModel, top: int) -> dict[str, Any]:
    label = trained.class_names[int(predict_labels(p.proba[None], trained.threshold)[0])]
    cells = []
    if p.weights is not None:
        order = np.argsort(-p.weights)[:top]
        cells = [{"file": str(cohort[p.id].images[j]), "weight": float(p.weights[j])} for j in order]
    out: dict[str, Any] = {
        "patient": p.id,
        "probabilities": dict(zip(trained.class_names, map(float, p.proba))),
        "label": label,
        "top_cells": cells,
    }
    if p.gate is not None:
        out["gate_image_expert"] = p.gate
    return out
