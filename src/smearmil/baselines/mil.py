"""Classical multiple-instance classifiers over instance features, with scikit-learn's estimator API.

``fit(bags, y)`` takes a list of (n_i, d) arrays and binary bag labels; ``predict_proba(bags)``
returns (n_bags, 2). They train on every instance of every bag, as the paper does; ``max_instances=N``
instead draws at most N instances per training bag at random (seeded), which is faster and which
comparison labels show ("at most N cells per bag"). By default, as in the paper, a bag's probability
is the sigmoid of its score and the cut is 0.5, with no threshold tuned. ``calibrate=True`` instead
Platt-scales *out-of-fold* bag scores (internal stratified 3-fold CV, classes weighted equally): the
instance SVMs fit the training bags' witnesses closely, so their own scores can put the boundary where
no new bag reaches it; this tunes the operating point, and outputs that use it say "calibrated".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from .registry import BASELINES, IMGS, IMGS_ATTRS, Baseline

Bags = Sequence[np.ndarray]


class MILBase(ClassifierMixin, BaseEstimator):
    """Shared plumbing: binary labels, instance scaling, optionally capped training bags, out-of-fold
    calibration."""

    calibrate: bool = False
    max_instances: int | None = None

    def fit(self, bags: Bags, y: Sequence[int] | np.ndarray) -> MILBase:
        y = np.asarray(y, dtype=np.int64)
        if set(np.unique(y)) - {0, 1}:
            raise ValueError("these MIL classifiers are binary: labels must be 0 and 1")
        if len(bags) != len(y) or any(len(b) == 0 for b in bags):
            raise ValueError("need one non-empty bag per label")
        self.classes_ = np.array([0, 1])
        self.platt_ = self._out_of_fold_platt(bags, y) if self.calibrate else None
        capped = self._capped(bags)
        self.scaler_ = StandardScaler().fit(np.vstack(capped))
        self._fit_scaled([self.scaler_.transform(b) for b in capped], y)
        return self

    def _capped(self, bags: Bags) -> list[np.ndarray]:
        """The training bags, each cut to ``max_instances`` random instances when a cap is set."""
        cap = self.max_instances
        if cap is None:
            return list(bags)
        if cap < 1:
            raise ValueError(f"max_instances must be at least 1 (or None for every instance), got {cap}")
        rng = np.random.default_rng(self.random_state)
        return [b if len(b) <= cap else b[rng.choice(len(b), cap, replace=False)] for b in bags]

    def _out_of_fold_platt(self, bags: Bags, y: np.ndarray) -> LogisticRegression | None:
        folds = min(3, int(np.bincount(y, minlength=2).min()))
        if folds < 2:
            return None
        scores = np.empty(len(y))
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=self.random_state).split(np.zeros(len(y)), y):
            model = clone(self).set_params(calibrate=False).fit([bags[i] for i in tr], y[tr])
            scores[te] = model.decision_function([bags[i] for i in te])
        return LogisticRegression(class_weight="balanced").fit(scores[:, None], y)

    def _fit_scaled(self, bags: list[np.ndarray], y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def bag_scores(self, bags: Bags) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, bags: Bags) -> np.ndarray:
        return self.bag_scores([self.scaler_.transform(b) for b in bags])

    def predict_proba(self, bags: Bags) -> np.ndarray:
        s = self.decision_function(bags)
        if self.platt_ is not None:
            p = self.platt_.predict_proba(s[:, None])[:, 1]
        else:
            p = 1.0 / (1.0 + np.exp(-np.clip(s, -50, 50)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, bags: Bags) -> np.ndarray:
        return (self.predict_proba(bags)[:, 1] >= 0.5).astype(np.int64)


class _InstanceSVM(MILBase):
    """Parameters shared by the SVMs over instances (an RBF SVC, iterated on latent instance labels)."""

    def __init__(
        self,
        C: float = 1.0,
        gamma: str | float = "scale",
        max_iter: int = 10,
        max_instances: int | None = None,
        class_weight: str | None = None,
        calibrate: bool = False,
        random_state: int = 0,
    ):
        self.C, self.gamma, self.max_iter, self.max_instances, self.random_state = (
            C,
            gamma,
            max_iter,
            max_instances,
            random_state,
        )
        self.class_weight, self.calibrate = class_weight, calibrate


class MISVM(_InstanceSVM):
    """MI-SVM: each positive bag is represented by its witness, its highest-scoring instance."""

    def _fit_scaled(self, bags: list[np.ndarray], y: np.ndarray) -> None:
        negatives = np.vstack([b for b, t in zip(bags, y) if t == 0])
        positives = [b for b, t in zip(bags, y) if t == 1]
        # Initial witnesses: the top instance of each positive bag under an SVM trained on every instance
        # with its bag's label. (Bag centroids, the textbook start, sit in a tight cluster that the RBF
        # SVM learns as "positive", and the witnesses then never move to the instances that differ.)
        everything = np.vstack([negatives, *positives])
        start = SVC(C=self.C, gamma=self.gamma, class_weight=self.class_weight).fit(
            everything, np.r_[np.zeros(len(negatives)), np.ones(len(everything) - len(negatives))]
        )
        witnesses = np.stack([b[int(np.argmax(start.decision_function(b)))] for b in positives])
        chosen = None
        for _ in range(self.max_iter):
            self.svm_ = SVC(C=self.C, gamma=self.gamma, class_weight=self.class_weight).fit(
                np.vstack([negatives, witnesses]), np.r_[np.zeros(len(negatives)), np.ones(len(witnesses))]
            )
            picks = [int(np.argmax(self.svm_.decision_function(b))) for b in positives]
            if picks == chosen:
                break
            chosen = picks
            witnesses = np.stack([b[k] for b, k in zip(positives, picks)])

    def bag_scores(self, bags: Bags) -> np.ndarray:
        return np.array([self.svm_.decision_function(b).max() for b in bags])


class MiSVM(_InstanceSVM):
    """mi-SVM: instance labels in positive bags are latent; at least one instance per positive bag is positive."""

    def _fit_scaled(self, bags: list[np.ndarray], y: np.ndarray) -> None:
        x = np.vstack(bags)
        owner = np.repeat(np.arange(len(bags)), [len(b) for b in bags])
        labels = y[owner].astype(np.float64)
        for _ in range(self.max_iter):
            self.svm_ = SVC(C=self.C, gamma=self.gamma, class_weight=self.class_weight).fit(x, labels)
            f = self.svm_.decision_function(x)
            new = np.where(y[owner] == 1, (f > 0).astype(np.float64), 0.0)
            for b in np.nonzero(y == 1)[0]:
                members = np.nonzero(owner == b)[0]
                if new[members].sum() == 0:
                    new[members[np.argmax(f[members])]] = 1.0
            if np.array_equal(new, labels) or len(np.unique(new)) < 2:
                break
            labels = new

    def bag_scores(self, bags: Bags) -> np.ndarray:
        return np.array([self.svm_.decision_function(b).max() for b in bags])


class MILES(MILBase):
    """MILES: bags embedded by their similarity to a pool of training instances, then an L1 linear SVM."""

    def __init__(
        self,
        C: float = 1.0,
        max_prototypes: int = 400,
        max_instances: int | None = None,
        calibrate: bool = False,
        random_state: int = 0,
    ):
        self.C, self.max_prototypes, self.max_instances, self.random_state = (
            C,
            max_prototypes,
            max_instances,
            random_state,
        )
        self.calibrate = calibrate

    def _embed(self, bags: Bags) -> np.ndarray:
        out = np.empty((len(bags), len(self.prototypes_)))
        for i, b in enumerate(bags):
            d2 = ((b[:, None, :] - self.prototypes_[None]) ** 2).sum(-1)
            out[i] = np.exp(-d2.min(axis=0) / self.sigma2_)
        return out

    def _fit_scaled(self, bags: list[np.ndarray], y: np.ndarray) -> None:
        pool = np.vstack(bags)
        rng = np.random.default_rng(self.random_state)
        if len(pool) > self.max_prototypes:
            pool = pool[rng.choice(len(pool), self.max_prototypes, replace=False)]
        self.prototypes_ = pool
        sample = pool[rng.choice(len(pool), min(200, len(pool)), replace=False)]
        self.sigma2_ = float(((sample[:, None] - sample[None]) ** 2).sum(-1).mean()) or 1.0
        with warnings.catch_warnings():  # liblinear's L1 solver often stops at max_iter on few bags; still usable
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.svm_ = LinearSVC(C=self.C, penalty="l1", dual=False, max_iter=5000).fit(self._embed(bags), y)

    def bag_scores(self, bags: Bags) -> np.ndarray:
        return self.svm_.decision_function(self._embed(bags))


class SpecialisingMIL(MILBase):
    """A generalisation of MI-SVM: a fraction ``eta`` of each positive bag's instances is positive.

    The top-``eta`` instances of each positive bag (by the current SVM) are its positives; the bag
    score is the mean score of its top-``eta`` instances. With ``eta=None`` the fraction is chosen
    from ``etas`` by stratified ``cv``-fold cross-validation on the training bags (balanced accuracy).
    """

    def __init__(
        self,
        eta: float | None = None,
        etas: Sequence[float] = (0.05, 0.1, 0.2, 0.35, 0.5),
        cv: int = 3,
        C: float = 1.0,
        gamma: str | float = "scale",
        max_iter: int = 8,
        max_instances: int | None = None,
        class_weight: str | None = None,
        calibrate: bool = False,
        random_state: int = 0,
    ):
        self.eta, self.etas, self.cv, self.C, self.gamma, self.class_weight = eta, etas, cv, C, gamma, class_weight
        self.calibrate = calibrate
        self.max_iter, self.max_instances, self.random_state = max_iter, max_instances, random_state

    @staticmethod
    def _top(n: int, eta: float) -> int:
        return max(1, math.ceil(eta * n))

    def fit(self, bags: Bags, y: Sequence[int] | np.ndarray) -> SpecialisingMIL:
        self.eta_ = self.eta if self.eta is not None else self._tune(bags, np.asarray(y))
        super().fit(bags, y)
        return self

    def _fit_scaled(self, bags: list[np.ndarray], y: np.ndarray) -> None:
        negatives = np.vstack([b for b, t in zip(bags, y) if t == 0])
        positives = [b for b, t in zip(bags, y) if t == 1]
        selected = positives  # start with every instance of the positive bags
        previous = None
        for _ in range(self.max_iter):
            chosen = np.vstack(selected)
            self.svm_ = SVC(C=self.C, gamma=self.gamma, class_weight=self.class_weight).fit(
                np.vstack([negatives, chosen]), np.r_[np.zeros(len(negatives)), np.ones(len(chosen))]
            )
            order = [np.argsort(-self.svm_.decision_function(b))[: self._top(len(b), self.eta_)] for b in positives]
            key = [tuple(sorted(o)) for o in order]
            if key == previous:
                break
            previous = key
            selected = [b[o] for b, o in zip(positives, order)]

    def _tune(self, bags: Bags, y: np.ndarray) -> float:
        folds = min(self.cv, int(np.bincount(y).min()))
        if folds < 2:
            return float(self.etas[0])
        splitter = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
        best, best_score = float(self.etas[0]), -1.0
        for eta in self.etas:
            found = []
            for tr, te in splitter.split(np.zeros(len(y)), y):
                model = clone(self).set_params(eta=eta, calibrate=False).fit([bags[i] for i in tr], y[tr])
                found.append(balanced_accuracy_score(y[te], model.predict([bags[i] for i in te])))
            if np.mean(found) > best_score + 1e-12:
                best, best_score = float(eta), float(np.mean(found))
        return best

    def bag_scores(self, bags: Bags) -> np.ndarray:
        out = []
        for b in bags:
            f = np.sort(self.svm_.decision_function(b))[::-1]
            out.append(f[: self._top(len(b), self.eta_)].mean())
        return np.array(out)


for _name, _cls in (("MISVM", MISVM), ("miSVM", MiSVM), ("MILES", MILES), ("specialising", SpecialisingMIL)):
    BASELINES.register(f"mil/{_name}")(
        Baseline(lambda seed, _c=_cls, **kw: _c(random_state=seed, **kw), (IMGS, IMGS_ATTRS))
    )
