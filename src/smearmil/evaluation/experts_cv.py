"""Cross-validation of ``kind: experts`` configs: per fold, cell features from an encoder that saw no
test patient (unless the config says so), the experts and their fusion fitted on the training
patients, and the test patients predicted.

Besides the ``smearmil cv`` outputs, each fold folder holds ``experts.csv`` (per test patient: each
expert's probability and the fusion's weights or gate), ``choices.json`` (what the fold chose from
its training patients) and, with ``threshold: out_of_fold``, ``training_scores.csv`` (the training
patients' out-of-fold scores that chose the threshold); ``summary.json`` says which cells each fold's
encoder learnt from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..baselines.segmentation import SegmentationConfig
from ..baselines.store import bags_of_features, feature_matrix
from ..data.cache import build_cache
from ..data.cohort import Cohort
from ..data.images import Preprocessing
from ..data.splits import Fold, SplitPlan, make_splits
from ..data.validation import load_cohort
from ..models.cell_encoder import CellEncoder, extract_features
from ..training.config import load_config
from ..training.experts_config import ExpertsConfig
from ..training.experts_fit import BagsOf, fit_experts
from ..training.fit import train_fold
from ..training.run_dir import RunDir
from ..training.ssl.config import SSLConfig, load_ssl_config
from ..training.ssl.pretrain import CellSource, pretrain
from ..training.trained import PatientPrediction, load_encoder
from ..utils.atomic import write_json, write_text
from .cv import CVResult, FoldPredictions, claim_cv, run_folds
from .ssl_cv import learns_cell_types, single_cell_encoder


class FoldCells:
    """Per-fold cell features of one config: computed once per fold (and resumed from its folder)."""

    def __init__(self, cohort: Cohort, config: ExpertsConfig, cache_dir: str | Path | None, progress: bool):
        self.cohort, self.config, self.cache_dir, self.progress = cohort, config, cache_dir, progress
        self._shared: dict[str, np.ndarray] | None = None

    def ssl_config(self) -> SSLConfig:
        cells = self.config.cells
        overrides: dict[str, Any] = {"seed": self.config.seed}
        if cells.ssl_epochs is not None:
            overrides["epochs"] = cells.ssl_epochs
        if cells.cell_labels is not None:
            overrides["cell_labels"] = str(cells.cell_labels)
        if cells.cell_epochs is not None:
            overrides["cell_epochs"] = cells.cell_epochs
        return load_ssl_config(cells.ssl, overrides)

    def ssl_sources(self, fold: Fold, prep: Preprocessing) -> list[CellSource]:
        """The cells the fold's SSL encoder learns from: training (and validation) patients, the
        ``extra_data`` sets, and the test patients only when ``cells.test_cells`` says so."""
        cells = self.config.cells
        seen = [*fold.train, *fold.val, *(fold.test if cells.test_cells else ())]
        cache = build_cache(self.cohort, prep, self.cache_dir, progress=self.progress)
        sources = [CellSource(cache, seen, str(self.cohort.root), self.cohort.identity())]
        for extra in cells.extra_data:
            other = load_cohort(extra, progress=self.progress)
            if other.root.resolve() == self.cohort.root.resolve():
                raise ValueError(f"cells.extra_data {extra} is the cohort under study; name other patients' cells")
            sources.append(
                CellSource(build_cache(other, prep, self.cache_dir, progress=self.progress), None, str(extra))
            )
        return sources

    def seen_by_encoder(self, fold: Fold) -> dict[str, Any]:
        """Which cells the fold's encoder learnt from (written in the summary)."""
        cells = self.config.cells
        if cells.source == "handcrafted":
            return {"source": "handcrafted", "learnt_from": "nothing (fixed hand-crafted features)"}
        if cells.source == "encoder":
            return {"source": "encoder", "learnt_from": f"whatever {cells.encoder} was pre-trained on"}
        if cells.source == "supervised":
            return {"source": "supervised", "learnt_from": "the fold's training patients (their labels)"}
        if cells.source == "single-cell":
            where = self.cell_labels() or "the fold's training patients' cell-type folders"
            return {"source": "single-cell", "learnt_from": f"the cell types of {where}"}
        return {
            "source": "ssl",
            "learnt_from": "the fold's training patients"
            + (" and its test patients' cells (cells.test_cells)" if cells.test_cells else "")
            + "".join(f" + all of {p}" for p in cells.extra_data),
            "test_cells": cells.test_cells,
        }

    def bags(self, fold: Fold, fold_dir: Path) -> BagsOf:
        source = self.config.cells.source
        if source == "handcrafted":
            table = self._handcrafted()
        elif source == "encoder":
            table = self._encoder_features(load_encoder(str(self.config.cells.encoder)), fold_dir.parent / "features")
        elif source == "supervised":
            table = self._encoder_features(self._supervised(fold, fold_dir), fold_dir / "features")
        elif source == "single-cell":
            shared = self.cell_labels() is not None  # a data set of none of our patients: one encoder for all folds
            folder = fold_dir.parent if shared else fold_dir
            patients = [] if shared else [*fold.train, *fold.val]
            table = self._encoder_features(self._single_cell(patients, folder / "single-cell"), folder / "features")
        else:
            table = self._encoder_features(self._ssl(fold, fold_dir), fold_dir / "features")
        return lambda ids: [table[i] for i in ids]

    def _handcrafted(self) -> dict[str, np.ndarray]:
        if self._shared is None:
            cells = self.config.cells
            cache = build_cache(
                self.cohort, Preprocessing(cells.size, cells.crop), self.cache_dir, progress=self.progress
            )
            matrix = np.nan_to_num(feature_matrix(cache, SegmentationConfig(), cells.n_jobs, self.progress))
            ids = [i for i in self.cohort.ids if i in set(cache.patient_ids)]
            self._shared = dict(zip(ids, bags_of_features(cache, matrix.astype(np.float32), ids)))
        return self._shared

    def _encoder_features(self, encoder: CellEncoder, folder: Path) -> dict[str, np.ndarray]:
        cache = build_cache(self.cohort, encoder.preprocessing, self.cache_dir, progress=self.progress)
        store = extract_features(encoder, self.cohort, cache, folder, self.progress)
        return {pid: store.bag(pid) for pid in store.patient_ids}

    def _ssl(self, fold: Fold, fold_dir: Path) -> CellEncoder:
        ssl = self.ssl_config()
        return pretrain(self.ssl_sources(fold, ssl.image.preprocessing), ssl, fold_dir / "ssl", self.progress)

    def cell_labels(self) -> str | None:
        """The single-cell data set a ``single-cell`` encoder learns from (``cells.cell_labels`` or the ssl
        preset's); None: the training patients' cell-type folders."""
        return self.ssl_config().cell_labels

    def check(self) -> None:
        """Fail before any work on what the cells' source cannot do on this cohort."""
        if self.config.cells.source == "single-cell" and not learns_cell_types(self.cohort, self.ssl_config()):
            raise ValueError(
                f"cells.source single-cell: {self.cohort.root} has no cell-type folders; "
                "give cells.cell_labels, a labelled single-cell data set such as blood-cells-dev"
            )

    def _single_cell(self, patients: Sequence[str], folder: Path) -> CellEncoder:
        """The cell-type encoder saved in ``folder``, trained there first if it is not."""
        if CellEncoder.is_saved_in(folder):
            return CellEncoder.load(folder)
        ssl = self.ssl_config()
        cache = build_cache(self.cohort, ssl.image.preprocessing, self.cache_dir, progress=self.progress)
        encoder = single_cell_encoder(self.cohort, cache, patients, ssl, self.progress)
        encoder.save(folder)
        return encoder

    def _supervised(self, fold: Fold, fold_dir: Path) -> CellEncoder:
        run = load_config(self.config.cells.supervised, {"seed": self.config.seed})
        cache = build_cache(self.cohort, run.image.preprocessing, self.cache_dir, progress=self.progress)
        trained = train_fold(
            self.cohort, Fold(fold.name, fold.train, fold.val, ()), run, fold_dir / "supervised", cache, self.progress
        )
        return trained.cell_encoder()


def _experts_csv(ids: Sequence[str], details: Sequence[dict[str, float]]) -> str:
    columns = sorted({k for d in details for k in d})
    lines = [",".join(["patient", *columns])]
    lines += [",".join([pid, *(f"{d[c]:.6g}" if c in d else "" for c in columns)]) for pid, d in zip(ids, details)]
    return "\n".join(lines) + "\n"


def _training_scores_csv(cohort: Cohort, ids: Sequence[str], p1: np.ndarray) -> str:
    """The training patients' out-of-fold P(class 1) that chose a fold's threshold, with their labels."""
    classes = cohort.class_names
    lines = [f"patient,label,prob_{classes[1]}"]
    lines += [f"{pid},{classes[y]},{p:.6f}" for pid, y, p in zip(ids, cohort.labels(list(ids)), p1)]
    return "\n".join(lines) + "\n"


def run_experts_cv(
    cohort: Cohort,
    config: ExpertsConfig,
    out: str | Path,
    folds: int = 5,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    splits: SplitPlan | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> CVResult:
    """Cross-validate an experts config; ``out`` as ``smearmil cv`` plus per-fold experts.csv/choices.json."""
    started = time.perf_counter()
    run = RunDir(out)
    config = config.model_copy(update={"seed": seed})
    val = config.val if config.cells.source == "supervised" else 0.0
    plan = splits or make_splits(cohort, "kfold", folds=folds, val=val, seed=seed)
    config.check_classes(len(cohort.class_names))
    cells = FoldCells(cohort, config, cache_dir, progress)
    cells.check()
    claim_cv(cohort, run, config.model_dump(mode="json"), plan, overwrite)
    seen: dict[str, Any] = {}
    choices: dict[str, Any] = {}

    def fit_predict(fold: Fold, fold_dir: Path) -> FoldPredictions:
        fold_dir.mkdir(parents=True, exist_ok=True)
        bags_of = cells.bags(fold, fold_dir) if config.uses_images else None
        train = [*fold.train, *fold.val]
        fitted = fit_experts(cohort, train, config, bags_of, seed * 100 + plan.folds.index(fold))
        test = list(fold.test)
        proba, details = fitted.predict(cohort, test, bags_of)
        write_text(fold_dir / "experts.csv", _experts_csv(test, details))
        write_json(fold_dir / "choices.json", fitted.chosen)
        if fitted.training_scores is not None:
            write_text(fold_dir / "training_scores.csv", _training_scores_csv(cohort, train, fitted.training_scores))
        seen[fold.name] = cells.seen_by_encoder(fold) if config.uses_images else {"source": "none"}
        choices[fold.name] = fitted.chosen
        gates = [d.get("gate_image_expert") for d in details]
        predictions = [PatientPrediction(pid, p, None, g) for pid, p, g in zip(test, proba, gates)]
        labels = cohort.labels(test)
        return FoldPredictions(fold.name, predictions, labels, fitted.threshold, fitted.threshold_source)

    def finish(results: list[FoldPredictions], summary: dict[str, Any]) -> None:
        summary["model"] = config.name
        summary["cells_seen_by_encoder"] = seen
        summary["choices"] = choices

    return run_folds(
        cohort,
        plan,
        fit_predict,
        run.path,
        name=config.name,
        seed=seed,
        config_text=config.to_yaml(),
        finish=finish,
        started=started,
        progress=progress,
    )
