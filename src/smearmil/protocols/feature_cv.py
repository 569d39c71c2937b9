"""Cross-validation of MIL heads on cached features, with attention per cell and per cell type.

Writes the ``smearmil cv`` outputs (``summary.json``, ``predictions.csv``, ``splits.json``,
``confusion.png``, ``roc.png`` for two classes) plus ``attention.csv`` (every test cell's attention),
``attention_by_cell_type.csv``/``.png`` (mean attention per cell type per true class, when the cohort
has cell types) and ``umap_cell_type.png``/``umap_attention.png`` (test cells of every fold).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..data.cohort import Cohort
from ..data.features import FeatureStore
from ..data.splits import Fold, SplitPlan, make_splits
from ..evaluation.encoder_probe import umap_embedding, umap_panels
from ..evaluation.plots import cell_type_attention_plot
from ..training.heads import HeadConfig, predict_head, train_head
from ..training.predictor import Prediction
from ..training.run_dir import RunDir
from ..utils.atomic import write_text
from ..utils.outputs import claim_output, run_fingerprint
from .cv import CVResult, FoldPredictions, run_folds

StoreForFold = Callable[[Fold, Path], FeatureStore]


def run_head_cv(
    cohort: Cohort,
    stores: StoreForFold,
    head: HeadConfig,
    out: str | Path,
    folds: int = 5,
    seed: int = 0,
    splits: SplitPlan | None = None,
    progress: bool = True,
    name: str = "attention MIL",
    extra_config: dict[str, Any] | None = None,
    umap: bool = True,
    data_identity: str | None = None,
    output_kind: str = "features-cv",
    overwrite: bool = False,
) -> CVResult:
    """Train a head per fold on the features ``stores(fold, fold_dir)`` gives, test it, summarise.

    ``data_identity`` names what the features come from (a feature store's, or a cohort's identity):
    with the config and splits it makes the run's fingerprint, so ``out`` resumes only the same CV."""
    out = Path(out)
    plan = splits or make_splits(cohort, "kfold", folds=folds, val=0.0, seed=seed)
    config = {"name": name, "seed": seed, "folds": folds, "head": head.model_dump(mode="json"), **(extra_config or {})}
    plan.check_cohort(cohort)
    fingerprint = run_fingerprint(config, data_identity or cohort.identity(), plan.to_json())
    claim_output(out, output_kind, fingerprint, overwrite)
    RunDir(out).write_info(cohort.root, cohort.layout, output_kind.replace("-", " "), fingerprint)
    cells: list[tuple] = []
    spaces: dict[str, str] = {}  # fold -> name of its feature space

    def fit_predict(fold: Fold, fold_dir: Path) -> FoldPredictions:
        store = stores(fold, fold_dir)
        spaces[fold.name] = str(store.directory)
        model = train_head(store, list(fold.train) + list(fold.val), head, seed * 100 + plan.folds.index(fold))
        test = list(fold.test)
        proba, weights = predict_head(model, store, test)
        for pid, w in zip(test, weights):
            features = store.bag(pid)
            for j, (cell, kind) in enumerate(zip(store.cell_ids(pid), store.cell_types(pid))):
                cells.append(
                    (fold.name, pid, store.label(pid), cell, kind, float(w[j]), float(w[j] * len(w)), features[j])
                )
        predictions = [Prediction(pid, p) for pid, p in zip(test, proba)]
        return FoldPredictions(fold.name, predictions, cohort.labels(test))

    def finish(results: list[FoldPredictions], summary: dict[str, Any]) -> None:
        summary["model"] = name
        write_text(out / "attention.csv", _attention_csv(cells))
        if cohort.has_cell_types:
            table = attention_by_cell_type(cells, cohort.class_names)
            write_text(out / "attention_by_cell_type.csv", _by_type_csv(table))
            cell_type_attention_plot(table, cohort.class_names, out / "attention_by_cell_type.png")
            summary["attention_by_cell_type"] = table
        if umap:
            shared = len(set(spaces.values())) == 1
            _umap_plots(cells, {f: "all folds" if shared else f for f in spaces}, out, seed)

    return run_folds(
        cohort,
        plan,
        fit_predict,
        out,
        name=name,
        seed=seed,
        finish=finish,
        progress=progress,
        config_text=yaml.safe_dump(config, sort_keys=False),
    )


def _attention_csv(cells: Sequence[tuple]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
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
    lines = ["class,cell_type,n_cells,mean_relative_attention"]
    for label, kinds in table.items():
        lines += [f'{label},"{kind}",{v["n_cells"]},{v["mean_relative_attention"]:.4f}' for kind, v in kinds.items()]
    return "\n".join(lines) + "\n"


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


def store_cv_stores(store: FeatureStore) -> StoreForFold:
    """One feature store for every fold (an encoder pre-trained beforehand)."""
    return lambda fold, fold_dir: store
