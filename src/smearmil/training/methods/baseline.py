"""``kind: baseline``: one of the paper's baselines (``clinical/<name>``, ``mil/<name>``) on the clinical
attributes, on bags of hand-crafted cell features, or on both (the attributes appended to every cell)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...baselines import BASELINES
from ...baselines.registry import ATTRS, IMGS
from ...data.attributes import AttributeEncoder
from ...data.cache import build_cache
from ...data.cohort import Cohort
from ...data.splits import Fold
from ..cell_sources import CELLS_DIR, Featurizer, Handcrafted
from ..config.baseline import BaselineConfig
from ..estimators import load_estimator, save_estimator
from ..experts_fit import explain_cells
from ..predictor import Prediction, Predictor, Subsets, check_attributes
from . import METHODS, FitSettings, Method


class BaselinePredictor(Predictor):
    method = "baseline"

    def __init__(self, config: BaselineConfig, estimator: Any, encoder: AttributeEncoder):
        self.config, self.estimator, self.encoder = config, estimator, encoder
        self.featurizer: Featurizer | None = None
        if config.inputs != ATTRS:
            f = config.features
            self.featurizer = Handcrafted(f.size, f.crop, f.n_jobs)
        self.data = config.data
        self.attributes = list(config.attributes) if config.inputs != IMGS else []
        self.uses_images = self.featurizer is not None

    def inputs(
        self, cohort: Cohort, ids: Sequence[str], cache_dir: str | Path | None, progress: bool, subsets: Subsets | None
    ) -> Any:
        """What the estimator takes: attributes (n, d), or bags of cells (with the attributes on each)."""
        ids = list(ids)
        if self.featurizer is None:
            return self.encoder.transform(cohort, ids)
        bags = self.featurizer.bags(cohort, ids, cache_dir, progress)
        found = [bags[pid] if subsets is None else bags[pid][subsets[pid]] for pid in ids]
        if self.config.inputs == IMGS:
            return found
        a = self.encoder.transform(cohort, ids)  # early fusion: the patient's attributes on every instance
        return [np.hstack([b, np.repeat(a[k][None], len(b), axis=0)]) for k, b in enumerate(found)]

    def predict(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        subsets: Subsets | None = None,
        explain: bool = True,
    ) -> list[Prediction]:
        check_attributes(self, cohort)
        x = self.inputs(cohort, ids, cache_dir, progress, subsets)
        proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
        out = [Prediction(pid, p) for pid, p in zip(ids, proba)]
        if explain and subsets is None and self.featurizer is not None:
            cache = build_cache(cohort, self.featurizer.preprocessing, cache_dir, progress=progress)
            explain_cells(out, self.estimator, x, cohort, cache)
        return out

    @property
    def label(self) -> str:
        return self.method

    @property
    def preprocessing(self) -> Any:
        return self.featurizer.preprocessing if self.featurizer is not None else None

    def save_files(self, folder: Path) -> dict[str, Any]:
        save_estimator(self.estimator, folder / "estimator")
        if self.featurizer is not None:
            self.featurizer.save(folder / CELLS_DIR)
        return {"config": self.config.model_dump(mode="json"), "encoder": self.encoder.to_dict()}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Predictor:
        config = BaselineConfig.model_validate(meta["config"])
        return cls(config, load_estimator(folder / "estimator"), AttributeEncoder.from_dict(meta["encoder"]))


@METHODS.register("baseline")
class BaselineMethod(Method):
    """A registered baseline fitted on the fold's training and validation patients."""

    kind = "baseline"
    Config = BaselineConfig
    predictor = BaselinePredictor
    config: BaselineConfig

    def data_label(self) -> str:
        return str(self.config.inputs)

    def fit(self, cohort: Cohort, fold: Fold, folder: Path, settings: FitSettings) -> Predictor:
        c = self.config
        train = [*fold.train, *fold.val]
        encoder = AttributeEncoder(c.attributes, c.log_attributes, c.data.missing_policy).fit(cohort, train)
        estimator = BASELINES.build(c.baseline, seed=settings.seed, **c.params)
        predictor = BaselinePredictor(c, estimator, encoder)
        predictor.class_names = list(cohort.class_names)
        estimator.fit(
            predictor.inputs(cohort, train, settings.cache_dir, settings.progress, None), cohort.labels(train)
        )
        return predictor
