"""Cell galleries of a report: the cells that push a few patients (misclassified first, then the most
uncertain, every class among them: ``selection``) most toward and against their call, from the run's
trained models (with saliency), from a predict folder's ``cells.csv``, or, for heads on cached features, by
attention from ``attention.csv``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cache import build_cache
from ..data.cohort import UNKNOWN_CELL_TYPE
from ..explain.evidence import contribution_label, evidence_shares, toward_call
from ..explain.gallery import cells_png, explain_patient, gallery_png, read_cell_image
from ..training.methods.run import RunPredictor
from ..training.predictor import Predictor
from ..training.run_dir import RunDir
from ..utils.outputs import digest
from ..utils.paths import slug
from ..utils.spreadsheet import read_rows
from .folder import OutputFolder, PatientRow
from .selection import gallery_order

CELLS = 6  # highest and lowest cells shown per patient


@dataclass
class Gallery:
    patient: str
    png: Path
    caption: str
    saliency: bool = False  # each cell shown above its saliency


def _describe(r: PatientRow, names: list[str], cuts: dict[str, float]) -> str:
    """``patient P7: true tumoral, called reactive (P(tumoral) = 0.512, threshold 0.553)``."""
    truth = f"true {r.truth}, " if r.truth is not None else ""
    cut = cuts.get(r.fold, cuts.get(""))
    at = f", threshold {cut:.3g}" if cut is not None else ""
    p = f" (P({names[1]}) = {r.proba[names[1]]:.3f}{at})" if len(names) == 2 else ""
    return f"patient {r.patient}: {truth}called {r.prediction}{p}"


def _pick(rows: list[PatientRow], names: list[str], n: int, cuts: dict[str, float]) -> list[PatientRow]:
    """``rows`` in the order their galleries are tried (``selection.gallery_order``)."""
    return gallery_order(rows, names, n, cuts)


def _png(files: Path, patient: str) -> Path:
    return files / f"gallery_{slug(patient)}_{digest(patient)[:6]}.png"  # a patient id is not a file name


def model_galleries(
    folder: OutputFolder,
    cohort: Any,
    n: int,
    cache_dir: str | Path | None,
    progress: bool,
    files: Path,
) -> tuple[str, list[Gallery]]:
    """Galleries with saliency from the trained models of a train, cv or compare folder; each patient is
    explained by the model it was a test patient of. Returns the method explained and the galleries."""
    found = folder.image_run()
    if found is None or cohort is None or n <= 0:
        return "", []
    name, path, judge = found[0], found[1], _judges(found[1])
    method = next((m for m in folder.methods if m.path == path), None)
    if method is None:
        return name, []
    names, cuts = folder.class_names, folder.cuts(method)
    rows = _pick([r for r in method.rows if r.patient in judge and r.patient in cohort], names, n, cuts)
    if not rows:
        return name, []
    cache = build_cache(cohort, judge[rows[0].patient].preprocessing, cache_dir, progress=progress)
    out: list[Gallery] = []
    for r in rows:
        if len(out) == n:
            break
        if not isinstance(judge[r.patient], RunPredictor):  # experts and baselines: their cells' contributions
            made = _contribution_gallery(
                judge[r.patient], r, cohort, names, _describe(r, names, cuts), files, cache_dir
            )
            out += [made] if made is not None else []
            continue
        trained = judge[r.patient].trained  # type: ignore[attr-defined]
        attributes = (
            trained.encoder.transform(cohort, [r.patient])[0] if trained.encoder.names else np.zeros(0, np.float32)
        )
        target = trained.class_names.index(r.prediction) if r.prediction in trained.class_names else None
        explanation = explain_patient(
            trained, r.patient, cache.read_bag(r.patient), cache.cell_ids(r.patient), attributes, CELLS, target
        )
        expert = trained.model.image_expert() is not trained.model
        _, toward, against = toward_call(np.zeros(0), explanation.toward, explanation.against, r.prediction)
        label = contribution_label(toward, against, expert)
        png = gallery_png(explanation, _png(files, r.patient), CELLS, call=r.prediction)
        caption = f"{_describe(r, names, cuts)}; numbers: {label}; each cell above its saliency"
        out.append(Gallery(r.patient, png, caption, saliency=True))
    return name, out


def _judges(path: Path) -> dict[str, Predictor]:
    """The model each patient was a test patient of, for the models of a train or cv folder that look at
    cells."""
    run = RunDir(path)
    try:
        fold_models = run.fold_models() if run.splits.is_file() else []
    except FileNotFoundError:
        return {}
    return {pid: f.model for f in fold_models for pid in f.test_ids if f.model.uses_images}


def _contribution_gallery(
    model: Any, r: PatientRow, cohort: Any, names: list[str], about: str, files: Path, cache_dir: str | Path | None
) -> Gallery | None:
    """The cells of a test patient that push its image expert's score most each way (no saliency: the
    expert sees features of the cells, not their pixels)."""
    p = model.predict(cohort, [r.patient], cache_dir, False)[0]
    found = p.contribution()
    if found is None or p.files is None:
        return None
    toward = model.class_names[model.toward(p.proba)]
    against = next((c for c in names if c != toward), "") if len(names) == 2 else ""
    values, toward, against = toward_call(found, toward, against, r.prediction)
    shares = evidence_shares(values)
    cells = [(Path(f), float(v), t) for f, v, t in zip(p.files, shares, p.cell_types or [""] * len(found))]
    expert = getattr(model, "method", "") == "experts" and bool(model.attributes)  # a fusion's image expert
    return _cells_gallery(r, cells, about, contribution_label(toward, against, expert), files, toward)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(read_rows(handle))


def _cells_gallery(
    r: PatientRow, cells: list[tuple[Path, float, str]], about: str, label: str, files: Path, toward: str
) -> Gallery | None:
    """A gallery read from image files: (file, score, cell type) per cell, highest and lowest shown; with
    ``toward`` the scores are signed shares of the evidence toward that class; ``about``: the patient."""
    cells = sorted(cells, key=lambda c: -c[1])
    chosen = cells if len(cells) <= 2 * CELLS else cells[:CELLS] + cells[-CELLS:]
    images, values, notes = [], [], []
    for file, value, kind in chosen:
        try:
            images.append(read_cell_image(file))
        except OSError:
            continue  # moved or unreadable since the run: shown without it
        values.append(value)
        notes.append("" if kind in ("", UNKNOWN_CELL_TYPE) else kind)
    if not images:
        return None
    png = cells_png(images, np.array(values), _png(files, r.patient), CELLS, toward=toward, notes=notes)
    types = "; below each cell its type" if any(notes) else ""
    return Gallery(r.patient, png, f"{about}; numbers: {label}{types}")


def predict_galleries(folder: OutputFolder, n: int, files: Path) -> list[Gallery]:
    """Galleries of a predict folder from its ``cells.csv`` (image files read directly, no model needed)."""
    path = folder.path / "cells.csv"
    if n <= 0 or not path.is_file() or not folder.methods:
        return []
    per: dict[str, list[dict[str, str]]] = {}
    for row in _read_rows(path):
        per.setdefault(row["patient"], []).append(row)
    names, cuts = folder.class_names, folder.cuts(folder.methods[0])
    out = []
    for r in _pick([r for r in folder.methods[0].rows if r.patient in per], names, n, cuts):
        toward = per[r.patient][0]["toward_class"]
        against = next((c for c in names if c != toward), "") if len(names) == 2 else ""
        raw = np.array([float(c["logit_contribution_toward_class"]) for c in per[r.patient]])
        values, toward, against = toward_call(raw, toward, against, r.prediction)
        cells = [
            (Path(c["file"]), float(v), c.get("cell_type", "")) for c, v in zip(per[r.patient], evidence_shares(values))
        ]
        label = contribution_label(toward, against)
        gallery = _cells_gallery(r, cells, _describe(r, names, cuts), label, files, toward)
        if gallery is not None:
            out.append(gallery)
        if len(out) == n:
            break
    return out


def attention_galleries(folder: OutputFolder, n: int, files: Path) -> list[Gallery]:
    """Cells a head on cached features attends to most and least (``attention.csv``), read from the data set."""
    path, root = folder.path / "attention.csv", folder.data_path()
    if n <= 0 or root is None or not path.is_file() or not folder.methods:
        return []
    per: dict[str, list[tuple[Path, float, str]]] = {}
    for row in _read_rows(path):
        cell = Path(row["cell"])
        where = cell if cell.is_absolute() else root / cell
        per.setdefault(row["patient"], []).append((where, float(row["relative_attention"]), row.get("cell_type", "")))
    label = "relative attention (1: as much as every cell of the bag alike; where the head looks, not which way)"
    names, cuts = folder.class_names, folder.cuts(folder.methods[0])
    out = []
    for r in _pick([r for r in folder.methods[0].rows if r.patient in per], names, n, cuts):
        gallery = _cells_gallery(r, per[r.patient], _describe(r, names, cuts), label, files, "")
        if gallery is not None:
            out.append(gallery)
        if len(out) == n:
            break
    return out
