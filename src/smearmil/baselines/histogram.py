"""A patient as the mix of its cells: the share of its cells in each kind of cell, found without labels.

A haematologist reads a smear as proportions: how many large cells with much cytoplasm, how many small
ones with clumped chromatin, how many smudges. This expert learns such kinds from the training cells
alone (no label): k-means clusters of their standardised, PCA-reduced features, and quantile bins along
the first principal axes (size and stain dominate them on hand-crafted features). A patient becomes
the share of its cells in each cluster and each bin, and a penalised logistic regression with balanced
classes reads those shares. The score is linear in the shares, so it is exactly the mean of the cells'
own scores: each cell's contribution is its kind's weight over the bag's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from .instance import MeanOfCells
from .registry import BASELINES, IMGS, IMGS_ATTRS, Baseline

MAX_FIT_CELLS = 20_000  # cells the kinds are learnt from (a random sample beyond that)
PCA_DIMS = 10  # the space the clusters are found in


class BagHistogram(MeanOfCells):
    """``fit(bags, y)`` on (n_i, d) cell-feature arrays: ``clusters`` k-means kinds and ``bins`` quantile
    bins on each of the first ``axes`` principal axes; a logistic regression (penalty ``C``) on each bag's
    shares."""

    def __init__(self, clusters: int = 8, axes: int = 2, bins: int = 5, C: float = 0.1, seed: int = 0):
        self.clusters = clusters
        self.axes = axes
        self.bins = bins
        self.C = C
        self.seed = seed

    def fit(self, bags: Sequence[np.ndarray], y: Sequence[int] | np.ndarray) -> BagHistogram:
        y = np.asarray(y, dtype=np.int64)
        if len(bags) != len(y) or any(len(b) == 0 for b in bags):
            raise ValueError("need one non-empty bag per label")
        self.classes_ = np.unique(y)
        cells = np.vstack([np.nan_to_num(b) for b in bags])
        rng = np.random.default_rng(self.seed)
        if len(cells) > MAX_FIT_CELLS:
            cells = cells[rng.choice(len(cells), MAX_FIT_CELLS, replace=False)]
        self.scaler_ = StandardScaler().fit(cells)
        scaled = self.scaler_.transform(cells)
        dims = max(1, min(PCA_DIMS, scaled.shape[1], len(scaled) - 1))
        self.pca_ = PCA(n_components=dims, random_state=self.seed).fit(scaled)
        reduced = self.pca_.transform(scaled)
        k = max(1, min(self.clusters, len(reduced)))
        self.kmeans_ = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(reduced)
        quantiles = np.linspace(0, 1, self.bins + 1)[1:-1]
        self.edges_ = [np.quantile(reduced[:, a], quantiles) for a in range(min(self.axes, dims))]
        shares = np.array([self.shares(b) for b in bags])
        self.share_scaler_ = StandardScaler().fit(shares)
        self.model_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000)
        self.model_.fit(self.share_scaler_.transform(shares), y)
        return self

    def cell_kinds(self, bag: np.ndarray) -> np.ndarray:
        """Each cell's one-hot kinds (n, clusters + axes x bins): its cluster, then its bin on each axis."""
        reduced = self.pca_.transform(self.scaler_.transform(np.nan_to_num(bag)))
        parts = [np.eye(self.kmeans_.n_clusters)[self.kmeans_.predict(reduced)]]
        for axis, edges in enumerate(self.edges_):
            parts.append(np.eye(len(edges) + 1)[np.searchsorted(edges, reduced[:, axis])])
        return np.hstack(parts)

    def shares(self, bag: np.ndarray) -> np.ndarray:
        """The share of the bag's cells in each kind."""
        return self.cell_kinds(bag).mean(axis=0)

    def cell_scores(self, bag: np.ndarray) -> np.ndarray:
        """Each cell's score: the patient's score is their mean (log-odds, or class scores)."""
        return self.model_.decision_function(self.share_scaler_.transform(self.cell_kinds(bag)))


BASELINES.register("mil/histogram")(
    Baseline(lambda seed, **params: BagHistogram(seed=seed, **params), (IMGS, IMGS_ATTRS))
)
