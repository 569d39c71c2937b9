"""Cross-validation of MIL heads on cached features, with attention per cell and per cell type.

Writes the ``smearmil cv`` outputs (``summary.json``, ``predictions.csv``, ``splits.json``,
``confusion.png``, ``roc.png`` for two classes) plus ``attention.csv`` (every test cell's attention),
``attention_by_cell_type.csv``/``.png`` (mean attention per cell type per true class, when the cohort
has cell types) and ``umap_cell_type.png``/``umap_attention.png`` (test cells of every fold).
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cohort import Cohort
from ..data.features import FeatureStore
from ..evaluation.encoder_probe import umap_embedding, umap_panels
from ..evaluation.plots import cell_type_attention_plot
from ..training.config.experts import ExpertsConfig, head_on_cells
from ..training.config.head import HeadConfig
from ..training.heads import head_predictions
from ..training.methods.feature_experts import ExpertsMethod, ExpertsPredictor
from ..training.predictor import Predictor
from ..utils.atomic import write_text
from ..utils.spreadsheet import SafeWriter, csv_text
from .cv import CVResult, CVSettings, FoldPredictions, run_cv


def run_head_cv(
    cohort: Cohort,
    config: ExpertsConfig,
    out: str | Path,
    cv: CVSettings | None = None,
    umap: bool = True,
    kind: str = "features-cv",
) -> CVResult:
    """``run_cv`` of an experts config whose image expert is a MIL head (``head_on_cells``), plus the
    attention of every test cell, by cell type, and UMAPs of the test cells. Each fold keeps its predictor,
    so the folder predicts new patients (as the mean of its folds) where its cells' source reads images."""
    cv = cv or CVSettings()

    def attention(fitted: dict[str, Predictor], folds: list[FoldPredictions], summary: dict[str, Any]) -> None:
        cells, spaces = _test_cells(fitted, folds)
        write_text(Path(out) / "attention.csv", _attention_csv(cells))
        if cohort.has_cell_types:
            table = attention_by_cell_type(cells, cohort.class_names)
            write_text(Path(out) / "attention_by_cell_type.csv", _by_type_csv(table))
            cell_type_attention_plot(table, cohort.class_names, Path(out) / "attention_by_cell_type.png")
            summary["attention_by_cell_type"] = table
        if umap:
            shared = len(set(spaces.values())) == 1
            _umap_plots(cells, {f: "all folds" if shared else f for f in spaces}, Path(out), cv.seed)

    return run_cv(cohort, ExpertsMethod(config), out, cv, after=attention, kind=kind)


def store_head_cv(
    store: FeatureStore,
    head: HeadConfig,
    out: str | Path,
    cv: CVSettings | None = None,
    umap: bool = True,
    name: str | None = None,
) -> CVResult:
    """``run_head_cv`` on the patients of a ``features extract`` folder, read as they are."""
    cv = cv or CVSettings()
    cells = {"source": "features", "features": str(store.directory)}
    config = head_on_cells(name or f"{head.pooling.name} MIL on {store.directory.name}", cv.seed, cells, head)
    return run_head_cv(store.cohort(), config, out, cv, umap)


def _test_cells(fitted: dict[str, Predictor], folds: list[FoldPredictions]) -> tuple[list[tuple], dict[str, str]]:
    """Per test cell: fold, patient, label, cell, cell type, attention, relative attention, features; and
    each fold's feature space (the folder its features are kept in)."""
    cells: list[tuple] = []
    spaces: dict[str, str] = {}
    for fold in folds:
        predictor = fitted[fold.fold]
        assert isinstance(predictor, ExpertsPredictor)
        kept = predictor.store or predictor.kept_features
        head = getattr(predictor.fitted.image, "model_", None)
        if kept is None or head is None:  # features not kept, or an image expert without attention
            continue
        store = FeatureStore(kept)
        spaces[fold.fold] = str(store.directory)
        test = [p.id for p in fold.predictions]
        bags = [store.bag(pid) for pid in test]
        _, weights = head_predictions(head, bags)
        for pid, w, features in zip(test, weights, bags):
            for j, (cell, kind) in enumerate(zip(store.cell_ids(pid), store.cell_types(pid))):
                cells.append(
                    (fold.fold, pid, store.label(pid), cell, kind, float(w[j]), float(w[j] * len(w)), features[j])
                )
    return cells, spaces


def _attention_csv(cells: Sequence[tuple]) -> str:
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["fold", "patient", "label", "cell", "cell_type", "attention", "relative_attention"])
    for fold, pid, label, cell, kind, w, rel, _ in cells:
        writer.writerow([fold, pid, label, cell, kind, f"{w:.6g}", f"{rel:.6g}"])
    return buffer.getvalue()


def attention_by_cell_type(
    cells: Sequence[tuple], class_names: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{class: {cell type: {"n_cells", "mean_relative_attention"}}}`` over test cells.

    Relative attention is a cell's weight times its bag's size: 1 is what every cell of a bag would
    get under uniform attention, 3 means three times that.
    """
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, _, label, _, kind, _, rel, _ in cells:
        sums[(label, kind)].append(rel)
    table: dict[str, dict[str, dict[str, float]]] = {c: {} for c in class_names}
    for (label, kind), values in sorted(sums.items()):
        table[label][kind] = {"n_cells": len(values), "mean_relative_attention": float(np.mean(values))}
    return table


def _by_type_csv(table: dict[str, dict[str, dict[str, float]]]) -> str:
    rows: list[list[Any]] = [["class", "cell_type", "n_cells", "mean_relative_attention"]]
    for label, kinds in table.items():
        rows += [[label, kind, v["n_cells"], f"{v['mean_relative_attention']:.4f}"] for kind, v in kinds.items()]
    return csv_text(rows)


def _umap_plots(cells: Sequence[tuple], spaces: dict[str, str], out: Path, seed: int, max_cells: int = 5000) -> None:
    """UMAPs of the test cells by cell type and by attention: one panel per feature space (folds whose
    encoders differ cannot share one embedding)."""
    if len(cells) < 5:
        return
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(cells), min(max_cells, len(cells)), replace=False))
    groups: dict[str, list[int]] = {}
    for i in chosen:
        groups.setdefault(spaces[cells[i][0]], []).append(int(i))
    groups = {name: rows for name, rows in groups.items() if len(rows) >= 5}
    if not groups:
        return
    points = {name: umap_embedding(np.stack([cells[i][7] for i in rows]), seed) for name, rows in groups.items()}
    umap_panels(
        {n: (points[n], [cells[i][4] for i in rows]) for n, rows in groups.items()},
        out / "umap_cell_type.png",
        "test cells by cell type",
        "cell type",
    )
    umap_panels(
        {n: (points[n], list(np.log10([max(cells[i][6], 1e-3) for i in rows]))) for n, rows in groups.items()},
        out / "umap_attention.png",
        "test cells by attention",
        "log10 relative attention",
    )
