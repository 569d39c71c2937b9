"""Instance-level logistic MIL: every cell inherits its patient's label, a linear classifier scores
cells, and a patient's score is the mean of its cells' log-odds (mean pooling of instance logits).

With few patients and many cells per patient this is far steadier than a bag-level classifier on
pooled features: each training patient counts once (its cells share a weight of 1/n_cells), each
class counts equally, and a strong L2 penalty keeps the cell scorer smooth. The mean log-odds is the
patient's score, so 0.5 on the returned probabilities is the balanced operating point. It assumes
that many cells of a patient shift with the diagnosis (as a tumoral clone does), not that one witness
cell decides a bag; for the latter, use mil/MISVM or mil/specialising.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .registry import BASELINES, IMGS, IMGS_ATTRS, Baseline


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Class probabilities from patient scores: log-odds (n,) for two classes, else class scores (n, k)."""
    if scores.ndim == 1:
        p = 1.0 / (1.0 + np.exp(-scores))
        return np.column_stack([1 - p, p])
    scores = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    return e / e.sum(axis=1, keepdims=True)


class MeanOfCells(ClassifierMixin, BaseEstimator):
    """A bag classifier whose patient score is the mean of its cells' scores (``cell_scores``, set by the
    subclass), so each cell's contribution is exact."""

    classes_: np.ndarray

    def cell_scores(self, bag: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decision_function(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self.cell_scores(b).mean(axis=0) for b in bags])

    def predict_proba(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        return probabilities(self.decision_function(bags))

    def predict(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        return self.classes_[self.predict_proba(bags).argmax(axis=1)]


class InstanceLogistic(MeanOfCells):
    """``fit(bags, y)`` on a list of (n_i, d) cell-feature arrays; ``cell_scores(bag)`` gives per-cell
    log-odds (binary) or class scores (several classes)."""

    def __init__(self, C: float = 0.01, max_iter: int = 3000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, bags: Sequence[np.ndarray], y: Sequence[int] | np.ndarray) -> InstanceLogistic:
        y = np.asarray(y, dtype=np.int64)
        if len(bags) != len(y) or any(len(b) == 0 for b in bags):
            raise ValueError("need one non-empty bag per label")
        self.classes_ = np.unique(y)
        counts = {c: int((y == c).sum()) for c in self.classes_}
        cells = np.vstack([np.nan_to_num(b) for b in bags])
        labels = np.concatenate([np.full(len(b), c) for b, c in zip(bags, y)])
        weights = np.concatenate([np.full(len(b), 1.0 / (counts[c] * len(b))) for b, c in zip(bags, y)])
        self.scaler_ = StandardScaler().fit(cells)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter)
        self.model_.fit(self.scaler_.transform(cells), labels, sample_weight=weights * len(weights) / weights.sum())
        return self

    def cell_scores(self, bag: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(self.scaler_.transform(np.nan_to_num(bag)))


BASELINES.register("mil/instance")(Baseline(lambda seed, C=0.01, **_: InstanceLogistic(C=C), (IMGS, IMGS_ATTRS)))
