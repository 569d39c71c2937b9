"""Cell galleries of a report: the highest and lowest contributing cells of a few patients
(misclassified first), from the run's trained models (with saliency), from a predict folder's
``cells.csv``, or, for heads on cached features, by attention from ``attention.csv``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cache import build_cache
from ..data.cohort import UNKNOWN_CELL_TYPE
from ..explain.gallery import cells_png, contribution_label, explain_patient, gallery_png, read_cell_image
from ..training.methods.run import RunPredictor
from ..training.run_dir import RunDir
from ..utils.outputs import digest
from ..utils.paths import slug
from ..utils.spreadsheet import read_rows
from .folder import OutputFolder, PatientRow

CELLS = 6  # highest and lowest cells shown per patient


@dataclass
class Gallery:
    patient: str
    png: Path
    caption: str


def _order(rows: list[PatientRow], order: list[str]) -> list[PatientRow]:
    """``rows`` in the order of the patients table (misclassified first)."""
    rank = {p: i for i, p in enumerate(order)}
    return sorted(rows, key=lambda r: (rank.get(r.patient, len(rank)), r.patient))


def _describe(r: PatientRow, names: list[str]) -> str:
    truth = f"true {r.truth}, " if r.truth is not None else ""
    p = f" (P({names[1]}) = {r.proba[names[1]]:.3f})" if len(names) == 2 else ""
    return f"patient {r.patient}: {truth}predicted {r.prediction}{p}"


def _png(files: Path, patient: str) -> Path:
    return files / f"gallery_{slug(patient)}_{digest(patient)[:6]}.png"  # a patient id is not a file name


def model_galleries(
    folder: OutputFolder,
    cohort: Any,
    n: int,
    order: list[str],
    cache_dir: str | Path | None,
    progress: bool,
    files: Path,
) -> tuple[str, list[Gallery]]:
    """Galleries with saliency from the trained models of a train, cv or compare folder; each patient is
    explained by the model it was a test patient of. Returns the method explained and the galleries."""
    found = folder.image_run()
    if found is None or cohort is None or n <= 0:
        return "", []
    name, path = found
    run = RunDir(path)
    try:
        fold_models = run.fold_models() if run.splits.is_file() else []
    except FileNotFoundError:
        return name, []
    judge = {pid: f.model for f in fold_models for pid in f.test_ids if f.model.uses_images}
    method = next((m for m in folder.methods if m.path == path), None)
    rows = [r for r in _order(method.rows if method else [], order) if r.patient in judge and r.patient in cohort]
    if not rows:
        return name, []
    names = folder.class_names
    cache = build_cache(cohort, judge[rows[0].patient].preprocessing, cache_dir, progress=progress)
    out = []
    for r in rows[:n]:
        if not isinstance(judge[r.patient], RunPredictor):  # experts and baselines: their cells' contributions
            made = _contribution_gallery(judge[r.patient], r, cohort, names, files, cache_dir)
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
        label = contribution_label(explanation.toward, explanation.against, expert)
        png = gallery_png(explanation, _png(files, r.patient), CELLS, _describe(r, names), label)
        out.append(Gallery(r.patient, png, f"{_describe(r, names)}; numbers: {label}; each cell above its saliency"))
    return name, out


def _contribution_gallery(
    model: Any, r: PatientRow, cohort: Any, names: list[str], files: Path, cache_dir: str | Path | None
) -> Gallery | None:
    """The cells of a test patient that push its image expert's score most each way (no saliency: the
    expert sees features of the cells, not their pixels)."""
    p = model.predict(cohort, [r.patient], cache_dir, False)[0]
    found = p.contribution()
    if found is None or p.files is None:
        return None
    toward = model.class_names[model.toward(p.proba)]
    against = next((c for c in names if c != toward), "") if len(names) == 2 else ""
    cells = [(Path(f), float(v), t) for f, v, t in zip(p.files, found, p.cell_types or [""] * len(found))]
    return _cells_gallery(r, cells, names, contribution_label(toward, against), files, signed=True)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(read_rows(handle))


def _cells_gallery(
    r: PatientRow, cells: list[tuple[Path, float, str]], names: list[str], label: str, files: Path, signed: bool
) -> Gallery | None:
    """A gallery read from image files: (file, score, cell type) per cell, highest and lowest shown."""
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
    png = cells_png(
        images, np.array(values), _png(files, r.patient), label, CELLS, _describe(r, names), signed=signed, notes=notes
    )
    types = "; below each cell its type" if any(notes) else ""
    return Gallery(r.patient, png, f"{_describe(r, names)}; numbers: {label}{types}")


def predict_galleries(folder: OutputFolder, n: int, order: list[str], files: Path) -> list[Gallery]:
    """Galleries of a predict folder from its ``cells.csv`` (image files read directly, no model needed)."""
    path = folder.path / "cells.csv"
    if n <= 0 or not path.is_file() or not folder.methods:
        return []
    per: dict[str, list[dict[str, str]]] = {}
    for row in _read_rows(path):
        per.setdefault(row["patient"], []).append(row)
    names = folder.class_names
    out = []
    for r in [r for r in _order(folder.methods[0].rows, order) if r.patient in per]:
        toward = per[r.patient][0]["toward_class"]
        against = next((c for c in names if c != toward), "") if len(names) == 2 else ""
        cells = [
            (Path(c["file"]), float(c["logit_contribution_toward_class"]), c.get("cell_type", ""))
            for c in per[r.patient]
        ]
        gallery = _cells_gallery(r, cells, names, contribution_label(toward, against), files, signed=True)
        if gallery is not None:
            out.append(gallery)
        if len(out) == n:
            break
    return out


def attention_galleries(folder: OutputFolder, n: int, order: list[str], files: Path) -> list[Gallery]:
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
    out = []
    for r in [r for r in _order(folder.methods[0].rows, order) if r.patient in per]:
        gallery = _cells_gallery(r, per[r.patient], folder.class_names, label, files, signed=False)
        if gallery is not None:
            out.append(gallery)
        if len(out) == n:
            break
    return out
