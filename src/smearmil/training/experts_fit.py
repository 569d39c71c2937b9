"""Fit an image expert, an attribute expert and their fusion on one fold's training patients.

The experts are fitted on all training patients; the fusion on their out-of-fold scores (each training
patient scored by experts fitted without it, ``inner_folds`` folds). Nothing here sees a test patient:
``fit_experts`` is given the training patients only, and ``predict`` scores whichever patients it is asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from ..baselines import BASELINES
from ..data.attributes import AttributeEncoder
from ..data.cohort import Cohort
from .experts_config import HEAD, ExpertsConfig, ExpertSpec
from .feature_mil import HeadConfig, fit_head, head_predictions
from .fusions import FUSIONS, Fusion

BagsOf = Callable[[Sequence[str]], list[np.ndarray]]  # patient ids -> their (n_cells, d) features


class HeadEstimator:
    """A MIL head (any pooling) on cached features with scikit-learn's ``fit``/``predict_proba``."""

    def __init__(self, n_classes: int, seed: int = 0, **params: Any):
        self.n_classes, self.seed, self.config = n_classes, seed, HeadConfig.model_validate(params)

    def fit(self, bags: Sequence[np.ndarray], y: np.ndarray) -> HeadEstimator:
        self.classes_ = np.arange(self.n_classes)
        self.model_ = fit_head(bags, np.asarray(y, dtype=np.int64), self.n_classes, self.config, self.seed)
        return self

    def predict_proba(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        return head_predictions(self.model_, bags)[0]


def build_expert(spec: ExpertSpec, n_classes: int, seed: int) -> Any:
    if spec.name == HEAD:
        return HeadEstimator(n_classes, seed, **spec.params)
    return BASELINES.build(spec.name, seed=seed, **spec.params)


def _log_proba(model: Any, x: Any, n_classes: int) -> np.ndarray:
    p = np.asarray(model.predict_proba(x), dtype=np.float64)
    if p.shape[1] != n_classes:  # a class absent from an inner training split
        full = np.full((len(p), n_classes), 1e-6)
        full[:, np.asarray(model.classes_, dtype=np.int64)] = p
        p = full
    return np.log(np.clip(p, 1e-6, 1.0))


@dataclass
class FittedExperts:
    """The experts and the fusion of one fold, and what they chose from its training patients."""

    config: ExpertsConfig
    n_classes: int
    encoder: AttributeEncoder
    image: Any = None
    attributes: Any = None
    fusion: Fusion | None = None
    cell_scale: tuple[np.ndarray, np.ndarray] | None = None
    chosen: dict[str, Any] = field(default_factory=dict)

    def scores(self, cohort: Cohort, ids: Sequence[str], bags_of: BagsOf | None) -> dict[str, np.ndarray]:
        out = {}
        if self.image is not None and bags_of is not None:
            out["image"] = _log_proba(self.image, bags_of(ids), self.n_classes)
        if self.attributes is not None:
            out["attributes"] = _log_proba(self.attributes, self.encoder.transform(cohort, ids), self.n_classes)
        return out

    def predict(self, cohort: Cohort, ids: Sequence[str], bags_of: BagsOf | None) -> tuple[np.ndarray, list[dict]]:
        """Class probabilities (n, C) and per patient each expert's probabilities and the fusion's weights."""
        scores = self.scores(cohort, ids, bags_of)
        details = [{f"p_{expert}": float(np.exp(s[k, -1])) for expert, s in scores.items()} for k in range(len(ids))]
        if self.fusion is None:
            return np.exp(next(iter(scores.values()))), details
        cells = _mean_cells(bags_of, ids) if bags_of is not None else np.zeros((len(ids), 0))
        proba, fused = self.fusion.combine(scores, self.encoder.transform(cohort, ids), cells)
        return proba, [{**d, **f} for d, f in zip(details, fused)]


def _mean_cells(bags_of: BagsOf, ids: Sequence[str]) -> np.ndarray:
    return np.stack([np.nan_to_num(b).mean(axis=0) for b in bags_of(ids)])


def _fit_experts_only(
    cohort: Cohort, ids: Sequence[str], config: ExpertsConfig, bags_of: BagsOf | None, seed: int
) -> FittedExperts:
    n_classes = len(cohort.class_names)
    y = cohort.labels(list(ids))
    encoder = AttributeEncoder(config.attributes, config.log_attributes, config.data.missing_policy)
    fitted = FittedExperts(config, n_classes, encoder)
    if config.attribute_expert is not None or config.fusion is not None:
        encoder.fit(cohort, list(ids))
    if config.image_expert is not None and bags_of is not None:
        fitted.image = build_expert(config.image_expert, n_classes, seed).fit(bags_of(ids), y)
    if config.attribute_expert is not None:
        fitted.attributes = build_expert(config.attribute_expert, n_classes, seed).fit(
            encoder.transform(cohort, list(ids)), y
        )
    return fitted


def fit_experts(
    cohort: Cohort, train_ids: Sequence[str], config: ExpertsConfig, bags_of: BagsOf | None, seed: int = 0
) -> FittedExperts:
    """The experts on ``train_ids``, and the fusion on their out-of-fold scores over ``train_ids``."""
    ids = list(train_ids)
    fitted = _fit_experts_only(cohort, ids, config, bags_of, seed)
    if config.fusion is None:
        return fitted
    y = cohort.labels(ids)
    n_classes = len(cohort.class_names)
    folds = min(config.inner_folds, int(np.bincount(y, minlength=n_classes)[np.unique(y)].min()))
    if folds < 2:
        raise ValueError("a fusion needs at least 2 training patients of every class (out-of-fold scores)")
    oof: dict[str, np.ndarray] = {}
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        inner = _fit_experts_only(cohort, [ids[i] for i in a], config, bags_of, seed)
        for expert, s in inner.scores(cohort, [ids[i] for i in b], bags_of).items():
            oof.setdefault(expert, np.zeros((len(ids), n_classes)))[b] = s
    cells = _mean_cells(bags_of, ids) if bags_of is not None else np.zeros((len(ids), 0))
    fusion = FUSIONS.build(config.fusion.name, config.fusion.params, seed)
    fitted.fusion = fusion.fit(oof, fitted.encoder.transform(cohort, ids), cells, y)
    fitted.chosen = {"fusion": config.fusion.name, "inner_folds": folds, **fusion.choices()}
    return fitted
