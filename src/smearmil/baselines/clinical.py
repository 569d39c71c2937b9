"""Classifiers on clinical attributes alone (the paper's Table 3 rows), scikit-learn pipelines."""

from __future__ import annotations

from sklearn.base import ClassifierMixin
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


def _pipeline(estimator: ClassifierMixin) -> ClassifierMixin:
    return make_pipeline(StandardScaler(), estimator)


CLINICAL = {
    "svm": lambda seed: _pipeline(CalibratedClassifierCV(SVC(random_state=seed), ensemble=False)),
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
