"""Predict a cohort of new patients with a final model, a CV folder (its fold models as an ensemble) or a
cached-feature model (encoder + head): probabilities, gates, and each cell's signed contribution.

A cell's contribution is its share of the patient's logit toward ``toward_class`` (for two classes the
positive class, ``class_names[1]``; otherwise the predicted class): positive pushes toward it, negative
away, in logit units (see ``smearmil.models.contributions``). An ensemble averages its models'
probabilities, gates and contributions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.cache import build_cache
from ..data.cohort import UNKNOWN_CELL_TYPE, Cohort
from ..data.options import DataOptions
from ..models.base import probabilities
from ..models.contributions import bag_explanation, feature_explanation
from ..training.feature_final import FeatureModel
from ..training.run_dir import RunDir
from ..training.trained import TrainedModel
from ..utils.device import default_device

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One patient: probabilities, the MOE gate (weight of the image expert) and the cells' contributions."""

    id: str
    proba: np.ndarray
    gate: float | None = None
    files: list[str] | None = None
    contributions: np.ndarray | None = None
    cell_types: list[str] | None = None


class Predictor:
    """What ``predict`` needs of any trained thing."""

    class_names: list[str]
    threshold: float
    models: str  # which model(s) predict, as written in predictions.csv
    kind: str  # model, ensemble of N fold models, or features
    source: Path
    data: DataOptions
    attributes: list[str]

    def predict(
        self, cohort: Cohort, ids: Sequence[str], cache_dir: str | Path | None = None, progress: bool = True
    ) -> list[Prediction]:
        raise NotImplementedError  # pragma: no cover - abstract

    def toward(self, proba: np.ndarray) -> int:
        """The class whose logit a patient's contributions explain."""
        return 1 if len(self.class_names) == 2 else int(np.argmax(proba))


def _cell_info(cohort: Cohort, cache: Any, patient_id: str) -> tuple[list[str], list[str]]:
    """Absolute file and cell type of each cached cell of a patient (in cache order)."""
    patient = cohort[patient_id]
    types = dict(zip(map(str, patient.images), patient.cell_types or []))
    files = []
    for cell in cache.cell_ids(patient_id):
        path = Path(cell)
        files.append(str(path if path.is_absolute() else cohort.root / path))
    return files, [types.get(f, UNKNOWN_CELL_TYPE) for f in files]


def _warn_skipped(cache: Any) -> None:
    for problem in getattr(cache, "skipped", []):
        log.warning("skipped %s: %s", problem.where, problem.message)


class ModelPredictor(Predictor):
    """One trained model (``smearmil train``), or the fold models of a ``cv`` folder averaged."""

    def __init__(self, models: list[TrainedModel], names: list[str], source: Path):
        first = models[0]
        self.members, self.names, self.source = models, names, source
        self.class_names, self.data = first.class_names, first.config.data
        self.threshold = float(np.mean([m.threshold for m in models]))
        self.attributes = list(first.encoder.names)
        self.kind = "model" if len(models) == 1 else f"ensemble of {len(models)} fold models"
        self.models = "+".join(names)

    def predict(
        self, cohort: Cohort, ids: Sequence[str], cache_dir: str | Path | None = None, progress: bool = True
    ) -> list[Prediction]:
        ids = list(ids)
        missing = [n for n in self.attributes if n not in cohort.attribute_names]
        if missing:
            raise ValueError(
                f"the model needs the attributes {self.attributes}, the cohort lacks {missing}: give a clinical "
                "table (--csv, or --attributes FILE for patient folders) with them"
            )
        first = self.members[0]
        cache = None  # decoded only for models that look at cells
        if first.uses_images:
            cache = build_cache(cohort, first.config.image.preprocessing, cache_dir, progress=progress)
            _warn_skipped(cache)
        probas = np.zeros((len(self.members), len(ids), len(self.class_names)))
        gates: dict[str, list[float]] = {}
        explained: dict[tuple[int, str], np.ndarray] = {}  # (member, patient) -> contributions (n, columns)
        for k, member in enumerate(self.members):
            image_only = member.uses_images and member.model.image_expert() is member.model
            if not image_only:  # fusions and attribute models: the model's own forward pass
                for i, p in enumerate(member.predict_cohort(cohort, ids, cache if member.uses_images else None)):
                    probas[k, i] = p.proba
                    if p.gate is not None:
                        gates.setdefault(p.id, []).append(float(p.gate))
            if cache is not None:
                for i, pid in enumerate(ids):  # one pass of the cells gives contributions (and an image model's logits)
                    contributions, logits = _explain(member, torch.from_numpy(cache.read_bag(pid)))
                    explained[k, pid] = contributions
                    if image_only:
                        probas[k, i] = probabilities(logits.float()[None].cpu(), len(self.class_names))[0].numpy()
        out = []
        for i, pid in enumerate(ids):
            proba = probas[:, i].mean(axis=0)
            gate = float(np.mean(gates[pid])) if pid in gates else None
            prediction = Prediction(pid, proba, gate)
            if cache is not None:
                prediction.files, prediction.cell_types = _cell_info(cohort, cache, pid)
                column = 0 if len(self.class_names) == 2 else self.toward(proba)
                prediction.contributions = np.mean([explained[k, pid][:, column] for k in range(len(self.members))], 0)
            out.append(prediction)
        return out


def _explain(trained: TrainedModel, cells: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Contributions to every logit column and the image expert's logits, from the fast inference model."""
    device = default_device()
    transform = trained.transform.to(device).eval() if trained.transform is not None else None
    prepare = (lambda x: transform(x.to(device), train=False)) if transform is not None else None
    with torch.inference_mode():
        return bag_explanation(trained.fast_model(device), cells, prepare)


class FeaturePredictor(Predictor):
    """A cached-feature model: cells -> its encoder -> its MIL head."""

    def __init__(self, model: FeatureModel, source: Path):
        self.model, self.source = model, source
        self.class_names, self.threshold = model.class_names, model.threshold
        self.data, self.attributes = model.data, []
        self.kind, self.models = "features", "encoder+head"

    def predict(
        self, cohort: Cohort, ids: Sequence[str], cache_dir: str | Path | None = None, progress: bool = True
    ) -> list[Prediction]:
        cache = build_cache(cohort, self.model.encoder.preprocessing, cache_dir, progress=progress)
        _warn_skipped(cache)
        out = []
        for pid in ids:
            features = self.model.embed(cache, pid)
            found, logits = feature_explanation(self.model.head, torch.from_numpy(features))
            proba = probabilities(logits.float()[None], len(self.class_names))[0].numpy().astype(np.float64)
            files, types = _cell_info(cohort, cache, pid)
            contributions = found[:, 0 if len(self.class_names) == 2 else self.toward(proba)]
            out.append(Prediction(pid, proba, None, files, contributions, types))
        return out


def load_predictor(path: str | Path) -> Predictor:
    """A predictor from a ``train`` run, a ``cv`` folder (ensemble of its folds) or a ``features train`` run."""
    path = Path(path)
    if FeatureModel.is_saved_in(path):
        return FeaturePredictor(FeatureModel.load(path), path)
    run = RunDir(path)
    if run.is_single_model:
        return ModelPredictor([TrainedModel.load(path)], ["model"], path)
    if not run.splits.is_file():
        if seeds := sorted(p.name for p in path.glob("seed-*") if p.is_dir()):
            raise ValueError(f"{path} is a repeated CV: predict with one of its folders ({', '.join(seeds)})")
        raise FileNotFoundError(
            f"{path} holds no trained model: give a folder written by `smearmil train`, `smearmil cv` or "
            "`smearmil features train`"
        )
    if (info := run.read_json(run.info)) and info.get("command") == "cv" and not run.model_meta.is_file():
        from ..utils.config_files import config_kind

        if run.config.is_file() and config_kind(str(run.config)) == "experts":
            raise ValueError(
                f"{path} is a CV of an experts config: its folds keep no final models to predict with; "
                "cross-validate a run config, or train one with `smearmil train --all`"
            )
    plan = run.plan()
    missing = [f.name for f in plan.folds if not (run.fold_dir(f.name) / "model.json").is_file()]
    if missing:
        raise ValueError(
            f"{path}: the CV is unfinished (no model for {', '.join(missing)}); finish it by running the same "
            "`smearmil cv` command again, which resumes, before predicting with its folds"
        )
    folds = run.fold_models()
    return ModelPredictor([f.model for f in folds], [f.fold for f in folds], path)


def predictions_table(predictor: Predictor, cohort: Cohort, predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """One row per patient: id, true label (empty when unknown), probability per class, prediction, gate,
    the model(s) used."""
    from ..utils.scoring import predict_labels

    rows = []
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
                "models": predictor.models,
            }
        )
    return rows


def cells_table(predictor: Predictor, predictions: Sequence[Prediction]) -> list[dict[str, Any]]:
    """One row per readable cell: patient, file, cell type, the class its contribution is toward, and the
    signed contribution (logit units; positive pushes the patient toward ``toward_class``)."""
    rows = []
    for p in predictions:
        if p.contributions is None or p.files is None:
            continue
        toward = predictor.class_names[predictor.toward(p.proba)]
        types = p.cell_types or [UNKNOWN_CELL_TYPE] * len(p.files)
        for file, kind, value in zip(p.files, types, p.contributions):
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
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def trained_on(predictor: Predictor, cohort: Cohort) -> set[str]:
    """The cohort's patients whose id is among the training (or validation) patients of the predictor's
    model(s): judged by id, so a renamed copy escapes, but a cohort with one patient more or less does not."""
    run = RunDir(predictor.source)
    if not run.splits.is_file():
        return set()
    plan = run.plan()
    return {p for f in plan.folds for p in (*f.train, *f.val)} & set(cohort.ids)


def predict_to(
    predictor: Predictor,
    cohort: Cohort,
    out: str | Path,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Predict every patient of ``cohort`` and write ``predictions.csv``, ``cells.csv``, ``run.json`` and,
    when some patients have labels, ``summary.json`` (metrics on those patients, named)."""
    from ..utils.atomic import write_json, write_text
    from ..utils.outputs import claim_output, digest, run_fingerprint
    from ..utils.scoring import METRICS, scores
    from .metrics import confusion

    out = Path(out)
    ids = cohort.ids
    if not ids:
        raise ValueError(f"{cohort.root}: no patient with a readable image to predict")
    fingerprint = run_fingerprint({"model": str(predictor.source.resolve())}, cohort.identity())
    claim_output(out, "predict", fingerprint, overwrite)
    predictions = predictor.predict(cohort, ids, cache_dir, progress)
    rows = predictions_table(predictor, cohort, predictions)
    header = ["patient", "label", *(f"prob_{c}" for c in predictor.class_names), "prediction"]
    write_text(out / "predictions.csv", _csv(rows, [*header, "gate_image_expert", "models"]))
    cells = cells_table(predictor, predictions)
    cell_header = ["patient", "file", "cell_type", "toward_class", "logit_contribution_toward_class"]
    write_text(out / "cells.csv", _csv(cells, cell_header))
    model_config = RunDir(predictor.source).config
    if model_config.is_file():
        write_text(RunDir(out).config, model_config.read_text(encoding="utf-8"))
    labelled = [i for i, p in enumerate(predictions) if cohort[p.id].label is not None]
    seen = trained_on(predictor, cohort)
    result: dict[str, Any] = {
        "model": str(predictor.source),
        "model_kind": predictor.kind,
        "models": predictor.models,
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
    RunDir(out).write_info(cohort.root, cohort.layout, "predict", fingerprint, model=str(predictor.source))
    result["patients"] = rows
    result["fingerprint"] = digest(fingerprint)
    return result
