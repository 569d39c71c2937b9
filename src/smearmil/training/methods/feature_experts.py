"""``kind: experts``: an image expert on per-cell features, an attribute expert and their fusion, every
choice made inside the training patients (``training.experts_fit``); deployable like any method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...data.cache import build_cache
from ...data.cohort import Cohort
from ...data.splits import Fold
from ...utils.spreadsheet import csv_text
from ..cell_sources import CELL_SOURCES, CELLS_DIR, Embedding, Featurizer, SourceContext, Stored, check_cell_types
from ..config import RunConfig, load_config
from ..config.experts import ExpertsConfig
from ..config.ssl import SSLConfig, load_ssl_config
from ..experts_fit import FittedExperts, explain_cells, fit_experts
from ..predictor import Prediction, Predictor, Subsets, check_attributes
from . import METHODS, FitSettings, Method

SSL_SOURCES = ("ssl", "random", "single-cell")


class ExpertsPredictor(Predictor):
    """The fitted experts and fusion, with the featurizer that reads new patients' cells."""

    method = "experts"

    def __init__(self, fitted: FittedExperts, featurizer: Featurizer | None):
        self.fitted, self.featurizer = fitted, featurizer
        config = fitted.config
        self.class_names = list(config.data.class_names or [])
        self.threshold, self.threshold_source = fitted.threshold, fitted.threshold_source
        self.data = config.data
        self.attributes = list(config.attributes) if config.attribute_experts or config.fusions else []
        self.uses_images = featurizer is not None
        self.store: Path | None = None  # where the fit kept its training cohort's features (reused in a CV)
        self.kept_features: Path | None = None  # that folder, as a loaded predictor knows it (never written to)

    def predict(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        subsets: Subsets | None = None,
        explain: bool = True,
    ) -> list[Prediction]:
        ids = list(ids)
        check_attributes(self, cohort)
        bags: dict[str, np.ndarray] = {}
        if self.featurizer is not None:
            bags = self.featurizer.bags(cohort, ids, cache_dir, progress, self.store)
            if subsets is not None:
                bags = {pid: bags[pid][subsets[pid]] for pid in ids}
        bags_of = (lambda chosen: [bags[i] for i in chosen]) if self.featurizer is not None else None
        proba, details = self.fitted.predict(cohort, ids, bags_of)
        out = [
            Prediction(pid, p.astype(np.float64), d.get("gate_image_expert"), d)
            for pid, p, d in zip(ids, proba, details)
        ]
        seen = self.featurizer is not None and self.featurizer.reads_images
        if explain and subsets is None and seen and self.fitted.image is not None:
            assert self.featurizer is not None
            cache = build_cache(cohort, self.featurizer.preprocessing, cache_dir, progress=progress)
            explain_cells(out, self.fitted.image, [bags[pid] for pid in ids], cohort, cache)
        return out

    def choices(self) -> dict[str, Any]:
        return self.fitted.chosen

    def parts(self) -> dict[str, Predictor]:
        """It, and with a fusion each expert alone (its own probabilities, cut at 0.5), for repeatability."""
        found: dict[str, Predictor] = {self.label.upper(): self}
        if self.fitted.fusion is None:
            return found
        for name, keep in (("IMAGE EXPERT", "image"), ("ATTRIBUTE EXPERT", "attributes")):
            alone = replace(
                self.fitted,
                fusion=None,
                image=self.fitted.image if keep == "image" else None,
                attributes=self.fitted.attributes if keep == "attributes" else None,
                threshold=0.5,
                threshold_source="fixed",
            )
            part = ExpertsPredictor(alone, self.featurizer if keep == "image" else None)
            part.class_names, part.data, part.store = self.class_names, self.data, self.store
            found[name] = part
        return found

    @property
    def label(self) -> str:
        return self.method

    @property
    def preprocessing(self) -> Any:
        reads = self.featurizer is not None and self.featurizer.reads_images
        return self.featurizer.preprocessing if reads and self.featurizer is not None else None

    def save_files(self, folder: Path) -> dict[str, Any]:
        self.fitted.save(folder)
        if self.featurizer is not None:
            self.featurizer.save(folder / CELLS_DIR)
        features = None
        kept = self.store or self.kept_features
        if kept is not None:  # where its cells' features are kept: relative to the folder holding it (a CV)
            where, home = kept.resolve(), folder.resolve().parent
            features = str(where.relative_to(home)) if where.is_relative_to(home) else str(where)
        return {
            "learnt_from": self.featurizer.learnt_from if self.featurizer is not None else None,
            "features": features,
        }

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Predictor:
        featurizer = Featurizer.load(folder / CELLS_DIR) if (folder / CELLS_DIR).is_dir() else None
        found = cls(FittedExperts.load(folder), featurizer)
        if meta.get("features"):
            where = Path(meta["features"])
            where = where if where.is_absolute() else folder.resolve().parent / where
            found.kept_features = where if where.is_dir() else None
        return found


@METHODS.register("experts")
class ExpertsMethod(Method):
    """Experts on cell features and attributes (``kind: experts``): the cells' features from a registered
    source learnt on the fold's training patients, the experts and their fusion fitted on them."""

    kind = "experts"
    Config = ExpertsConfig
    predictor = ExpertsPredictor
    config: ExpertsConfig

    def val_share(self) -> float:
        return self.config.val if self.config.cells.source == "supervised" else 0.0

    def data_label(self) -> str:
        c = self.config
        return "+".join(
            label for label, experts in (("imgs", c.image_experts), ("attrs", c.attribute_experts)) if experts
        )

    def check(self, cohort: Cohort) -> None:
        self.config.check_classes(len(cohort.class_names))
        if self.config.uses_images and self.config.cells.source == "single-cell":
            check_cell_types(cohort, self.ssl_config())

    def ssl_config(self) -> SSLConfig:
        """The pre-training config of an encoder the cells' source learns (``cells.ssl`` and its options)."""
        cells = self.config.cells
        overrides: dict[str, Any] = {"seed": self.config.seed}
        for key, value in (("epochs", cells.ssl_epochs), ("cell_labels", cells.cell_labels)):
            if value is not None:
                overrides[key] = str(value) if key == "cell_labels" else value
        if cells.cell_epochs is not None:
            overrides["cell_epochs"] = cells.cell_epochs
        if isinstance(cells.ssl, dict):
            return SSLConfig.model_validate({**cells.ssl, **overrides})
        return load_ssl_config(cells.ssl, overrides)

    def supervised_config(self) -> RunConfig:
        """The run config whose image expert the ``supervised`` source trains (``cells.supervised``)."""
        given = self.config.cells.supervised
        if isinstance(given, dict):
            return RunConfig.model_validate({**given, "seed": self.config.seed})
        return load_config(given, {"seed": self.config.seed})

    def featurizer(self, cohort: Cohort, fold: Fold, folder: Path, settings: FitSettings) -> Featurizer:
        cells = self.config.cells
        context = SourceContext(
            cohort,
            fold,
            folder,
            settings.shared or folder,
            ssl=self.ssl_config() if cells.source in SSL_SOURCES else None,
            supervised=self.supervised_config() if cells.source == "supervised" else None,
            encoder=cells.encoder,
            features=cells.features,
            extra_data=cells.extra_data,
            test_cells=cells.test_cells,
            size=cells.size,
            crop=cells.crop,
            n_jobs=cells.n_jobs,
            cache_dir=settings.cache_dir,
            progress=settings.progress,
        )
        return CELL_SOURCES.get(cells.source)(context)

    def fit(self, cohort: Cohort, fold: Fold, folder: Path, settings: FitSettings) -> Predictor:
        folder.mkdir(parents=True, exist_ok=True)
        train = [*fold.train, *fold.val]
        featurizer, store, bags_of = None, None, None
        if self.config.uses_images:
            featurizer = self.featurizer(cohort, fold, folder, settings)
            if isinstance(featurizer, Embedding):  # kept for the fold's test patients (and a resumed CV)
                store = (settings.shared or folder) / "features" if featurizer.shared else folder / "features"
            elif isinstance(featurizer, Stored):
                store = featurizer.directory
            table = featurizer.bags(cohort, train, settings.cache_dir, settings.progress, store)
            bags_of = lambda ids: [table[i] for i in ids]  # noqa: E731
        seed = settings.seed * 100 + settings.fold_index
        fitted = fit_experts(cohort, train, self.config, bags_of, seed, settings.progress)
        predictor = ExpertsPredictor(fitted, featurizer)
        predictor.class_names = list(cohort.class_names)
        predictor.store = store
        return predictor

    def fold_files(self, predictor: Predictor, cohort: Cohort, fold: Fold) -> dict[str, str]:
        """``choices.json`` is written for every method that chose something; with ``threshold: out_of_fold``
        the training patients' out-of-fold scores that chose the cut go to ``training_scores.csv``."""
        assert isinstance(predictor, ExpertsPredictor)
        p1 = predictor.fitted.training_scores
        if p1 is None:
            return {}
        train = [*fold.train, *fold.val]
        classes = cohort.class_names
        rows = [["patient", "label", f"prob_{classes[1]}"]]
        rows += [[pid, classes[y], f"{p:.6f}"] for pid, y, p in zip(train, cohort.labels(train), p1)]
        return {"training_scores.csv": csv_text(rows)}

    def summary(self, fitted: dict[str, Predictor]) -> dict[str, Any]:
        seen: dict[str, dict[str, Any]] = {}
        for name, predictor in fitted.items():
            featurizer = predictor.featurizer if isinstance(predictor, ExpertsPredictor) else None
            seen[name] = (
                {"source": self.config.cells.source, "learnt_from": featurizer.learnt_from}
                if featurizer is not None
                else {"source": "none"}
            )
            if self.config.cells.source == "ssl":
                seen[name]["test_cells"] = self.config.cells.test_cells
        return {
            "model": self.config.name,
            "cells_seen_by_encoder": seen,
            "choices": {name: p.choices() for name, p in fitted.items()},
        }
