"""Single runs: train on a hold-out split and report per split; evaluate a run; predict new patients."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cohort import Cohort
from ..data.splits import SplitPlan, all_labelled, make_splits
from ..evaluation.metrics import confusion, scores
from ..training.methods import FitSettings, Method
from ..training.predictor import Predictor, load_one
from ..training.run_dir import RunDir
from ..utils.atomic import write_json, write_text
from ..utils.outputs import claim_output, run_fingerprint
from ..utils.paths import slug
from ..utils.progress import stage
from ..utils.threads import fit_threads
from .cv import FoldPredictions, predictions_csv

log = logging.getLogger(__name__)


def _split_report(
    trained: Predictor, cohort: Cohort, ids: Sequence[str], cache_dir: Any, split: str, progress: bool = True
) -> tuple[dict[str, Any], FoldPredictions]:
    predictions = trained.predict(cohort, list(ids), cache_dir, progress, explain=False) if ids else []
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
    method: Method,
    out: str | Path,
    splits: SplitPlan | None = None,
    fold: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    all_patients: bool = False,
) -> dict[str, Any]:
    """Fit ``method`` on one split (its hold-out, ``method.holdout()``, or a fold of a splits file) and
    report val and test; with ``all_patients``, a final model on every labelled patient (validation drawn
    inside when the method uses one, no test), which makes inside them the same choices a CV fold makes
    and saves them.

    ``out`` resumes only a run of the same inputs; another one is refused unless ``overwrite``."""
    start = time.perf_counter()
    run = RunDir(out)
    seed = int(getattr(method.config, "seed", 0))
    if all_patients:
        if splits is not None:
            raise ValueError("--all trains on every labelled patient; it cannot be combined with --splits")
        splits = all_labelled(cohort, method.val_share(), seed)
    val, test = method.holdout()
    plan = splits or make_splits(cohort, "holdout", val=val, test=test, seed=seed)
    plan.check_cohort(cohort)
    chosen = plan.fold(fold)
    plan.check_training_classes(cohort)
    method.check(cohort)
    fingerprint = run_fingerprint(method.settings(), cohort.identity(), plan.to_json(), fold=chosen.name)
    claim_output(run.path, "train", fingerprint, overwrite, method=method.kind)
    plan.save(run.splits)
    write_text(run.config, method.to_yaml())
    lightning = method.lightning() if hasattr(method, "lightning") else {}
    run.write_info(cohort.root, cohort.layout, "train", fingerprint, method=method.kind, lightning=lightning)
    settings = FitSettings(seed, 0, run.path, cache_dir, progress)
    fit_threads()
    with stage(method.name):  # names its progress lines
        trained = method.fit(cohort, chosen, run.path, settings)
    trained.save(run.path)
    if trained.choices():
        write_json(run.path / "choices.json", trained.choices())
    reports = {}
    test_predictions = None
    for split, ids in (("val", chosen.val), ("test", chosen.test)):
        reports[split], predictions = _split_report(trained, cohort, ids, cache_dir, split, progress)
        if split == "test":
            test_predictions = predictions
    assert test_predictions is not None
    write_text(run.predictions, predictions_csv([test_predictions], cohort.class_names))
    result = {
        "fold": chosen.name,
        "method": method.kind,
        "choices": trained.choices(),
        "splits": reports,
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    write_json(run.metrics, result)
    return result


def evaluate_run(
    run: str | Path,
    cohort: Cohort,
    split: str = "auto",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a run on ``cohort`` and write its per-patient predictions.

    ``split``: ``test`` or ``val``, the run's own split of the cohort it trained on; ``all``, every
    labelled patient, predicted by the final model or a CV folder's ensemble (e.g. an external cohort);
    ``auto``: ``test`` on the run's own cohort (if it has test patients), else ``all``. Predictions go to
    ``out`` (default: ``RUN/evaluate-<cohort>-<split>``): ``predictions.csv`` (and ``cells.csv`` for ``all``)."""
    folder = RunDir(run)
    plan = folder.plan() if folder.splits.is_file() else None
    own = plan is not None and plan.cohort == cohort.fingerprint()
    if split == "auto":
        has_test = plan is not None and folder.is_single_model and bool(folder.own_fold(plan).test)
        split = "test" if own and has_test else "all"
    target = Path(out) if out is not None else folder.path / f"evaluate-{slug(cohort.root.name)}-{split}"
    if split == "all":
        from .predict import load_predictor, predict_to

        predictor = load_predictor(folder.path)
        if cohort.labelled() and predictor.class_names != cohort.class_names:
            raise ValueError(
                f"the run predicts {predictor.class_names} but the cohort has classes {cohort.class_names}"
            )
        found = predict_to(predictor, cohort, target, cache_dir, progress, overwrite=True)
        if "metrics" not in found:
            raise ValueError(
                f"{cohort.root}: no labelled patient to evaluate on; use `smearmil predict` for new patients"
            )
        return {
            "split": found["split"],
            "n_patients": found["n_labelled"],
            "threshold": found["threshold"],
            "threshold_source": predictor.threshold_source,
            "metrics": found["metrics"],
            "confusion_matrix": found["confusion_matrix"],
            "predictions": str(target / "predictions.csv"),
        }
    if not folder.is_single_model:
        raise ValueError(
            f"{run} is a cv folder: its test-fold metrics are in summary.json; evaluate it on new patients "
            "(--split all or another cohort)"
        )
    trained = load_one(folder.path)
    if trained.class_names != cohort.class_names:
        raise ValueError(f"the run predicts {trained.class_names} but the cohort has classes {cohort.class_names}")
    assert plan is not None
    plan.check_cohort(cohort, str(folder.splits))
    ids = list(folder.own_fold(plan).sets()[split])
    report, predictions = _split_report(trained, cohort, ids, cache_dir, split, progress)
    claim_output(
        target, "evaluate", run_fingerprint({"run": str(folder.path), "split": split}, cohort.identity()), True
    )
    write_text(target / "predictions.csv", predictions_csv([predictions], cohort.class_names))
    return {**report, "predictions": str(target / "predictions.csv")}
