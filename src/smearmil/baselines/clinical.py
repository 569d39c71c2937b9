"""Classifiers on clinical attributes alone (the paper's Table 3 rows), scikit-learn pipelines."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import AdaBoostClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from .registry import ATTRS, BASELINES, Baseline


class TooFewPatientsError(ValueError):
    """A class has too few training patients for the folds an estimator needs inside them."""


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """An RBF SVM whose scores are Platt-scaled on internal folds: ``folds`` of them, or as many as the
    smallest class has patients when fewer (at least 2 per class are needed)."""

    def __init__(self, folds: int = 5, random_state: int = 0):
        self.folds, self.random_state = folds, random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> CalibratedSVC:
        classes, counts = np.unique(np.asarray(y), return_counts=True)
        if len(classes) < 2:
            raise TooFewPatientsError(f"clinical/svm needs patients of two classes; every one is of class {classes[0]}")
        if counts.min() < 2:
            few = ", ".join(f"{n} of class {c}" for c, n in zip(classes.tolist(), counts) if n < 2)
            raise TooFewPatientsError(
                f"clinical/svm calibrates its scores on folds of the training patients, which needs at least 2 "
                f"patients per class, but it was given {few}: train on more patients (fewer folds) or use "
                "another baseline"
            )
        self.calibrated_ = CalibratedClassifierCV(
            SVC(random_state=self.random_state), cv=min(self.folds, int(counts.min())), ensemble=False
        ).fit(x, y)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.calibrated_.predict_proba(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.calibrated_.predict(x)


def _pipeline(estimator: ClassifierMixin) -> ClassifierMixin:
    return make_pipeline(StandardScaler(), estimator)


CLINICAL = {
    "svm": lambda seed: _pipeline(CalibratedSVC(random_state=seed)),
    "tree": lambda seed: _pipeline(DecisionTreeClassifier(max_depth=3, random_state=seed)),
    "gnb": lambda seed: _pipeline(GaussianNB()),
    "adaboost": lambda seed: _pipeline(AdaBoostClassifier(random_state=seed)),
    "gboost": lambda seed: _pipeline(GradientBoostingClassifier(random_state=seed)),
    "rf": lambda seed: _pipeline(RandomForestClassifier(n_estimators=200, random_state=seed)),
    "mlp": lambda seed: _pipeline(MLPClassifier(hidden_layer_sizes=(8,), max_iter=3000, random_state=seed)),
    # the paper's attribute expert (Eq. 11-13): two sigmoid hidden units
    "paper-mlp": lambda seed: _pipeline(
        MLPClassifier(hidden_layer_sizes=(2,), activation="logistic", max_iter=5000, random_state=seed)
    ),
    "logreg": lambda seed: _pipeline(LogisticRegression(max_iter=1000)),
}

for _name, _factory in CLINICAL.items():
    BASELINES.register(f"clinical/{_name}")(Baseline(lambda seed, _f=_factory, **_: _f(seed), (ATTRS,)))
