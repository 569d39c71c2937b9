"""Metrics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smearmil.evaluation.metrics import bootstrap_ci, fold_summary
from smearmil.utils.scoring import best_threshold, scores


def _binary(p1: list[float]) -> np.ndarray:
    p = np.array(p1)
    return np.stack([1 - p, p], axis=1)


def test_binary_scores_by_hand() -> None:
    y = np.array([0, 0, 0, 1, 1])
    proba = _binary([0.1, 0.6, 0.2, 0.9, 0.4])  # one false positive, one false negative
    s = scores(y, proba)
    assert s["sensitivity"] == pytest.approx(0.5) and s["specificity"] == pytest.approx(2 / 3)
    assert s["accuracy"] == pytest.approx(0.6) and s["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["roc_auc"] == pytest.approx(5 / 6)  # 0.9 beats all three negatives, 0.4 beats two
    assert scores(y, proba, threshold=0.35)["sensitivity"] == 1.0


def test_multiclass_scores_and_undefined_auc() -> None:
    y = np.array([0, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 2, 1]]
    s = scores(y, proba)
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert math.isnan(scores(np.array([1, 1]), _binary([0.2, 0.9]))["roc_auc"])


def test_threshold_chosen_on_validation_maximises_balanced_accuracy() -> None:
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.35])
    t = best_threshold(y, p1)
    assert 0.2 < t <= 0.3 and scores(y, _binary(list(p1)), t)["balanced_accuracy"] == 1.0


def test_fold_summary_and_bootstrap() -> None:
    summary, partial = fold_summary(
        [
            {
                "balanced_accuracy": 0.5,
                "roc_auc": float("nan"),
                "sensitivity": 1,
                "specificity": 0,
                "accuracy": 0.5,
                "macro_f1": 0.3,
            },
            {
                "balanced_accuracy": 1.0,
                "roc_auc": 0.8,
                "sensitivity": 1,
                "specificity": 1,
                "accuracy": 1.0,
                "macro_f1": 1.0,
            },
        ]
    )
    assert summary["balanced_accuracy"] == {"mean": 0.75, "std": pytest.approx(0.3535534)}
    # ROC-AUC is undefined on the first fold: missing from the summary, its mean over one fold given apart
    assert summary["roc_auc"] == {"mean": None, "std": None}
    assert partial == {"roc_auc": {"mean": 0.8, "std": 0.0, "n_folds": 1, "of": 2}}
    y = np.array([0] * 20 + [1] * 20)
    rng = np.random.default_rng(0)
    p1 = np.clip(y * 0.6 + rng.uniform(0, 0.4, 40), 0, 1)
    ci = bootstrap_ci(y, _binary(list(p1)), n=200)
    lo, hi = ci["accuracy"]
    assert lo is not None and hi is not None and lo <= scores(y, _binary(list(p1)))["accuracy"] <= hi


@pytest.mark.parametrize("n_classes", [2, 3])
def test_resampled_scores_equal_scores_of_each_resample(n_classes: int) -> None:
    from smearmil.utils.scoring import resampled_scores

    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 9)
    proba = rng.dirichlet(np.ones(n_classes), 9)
    proba[3] = proba[4]  # ties in the ranking
    thresholds = rng.uniform(0.3, 0.7, 9)
    idx = rng.integers(0, 9, (200, 9))
    idx[0] = 0  # one patient repeated: a single class, undefined metrics
    found = resampled_scores(y, proba, thresholds, idx)
    for b in range(len(idx)):
        expected = scores(y[idx[b]], proba[idx[b]], thresholds[idx[b]])
        for m, value in expected.items():
            np.testing.assert_allclose(found[m][b], value, atol=1e-12, err_msg=f"{m}, resample {b}")
