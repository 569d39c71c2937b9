"""Attributes are imputed and standardised with training-split statistics only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smearmil.data import DataError, load_cohort
from smearmil.data.attributes import AttributeEncoder

from .conftest import DEFAULT_ROWS, write_lymph_cohort


def test_training_median_imputation_with_missing_indicator(tmp_path: Path) -> None:
    rows = DEFAULT_ROWS + [("P5", "0", "M", "1/1/1950", ""), ("P6", "1", "F", "1/1/1940", "100.0")]
    cohort = load_cohort(write_lymph_cohort(tmp_path, rows=rows), progress=False)
    train = ["P1", "P2", "P3", "P4", "P5"]
    encoder = AttributeEncoder(["age", "lymph_count"]).fit(cohort, train)
    assert encoder.indicators == ["lymph_count"]
    assert encoder.feature_names == ["age", "log_lymph_count", "lymph_count_missing"]
    expected_median = float(np.median(np.log([5.1, 12.5, 4.2, 30.0])))
    assert encoder.medians["lymph_count"] == pytest.approx(expected_median)  # P6 (test) never used
    x = encoder.transform(cohort, ["P5", "P6"])
    imputed = (expected_median - encoder.means["lymph_count"]) / encoder.stds["lymph_count"]
    assert x[0, 1] == pytest.approx(imputed, abs=1e-5) and x[0, 2] == 1.0 and x[1, 2] == 0.0
    assert abs(encoder.transform(cohort, train)[:, 0].mean()) < 1e-5  # standardised on train
    assert AttributeEncoder.from_dict(encoder.to_dict()).transform(cohort, ["P6"]).tolist() == x[1:].tolist()


def test_error_policy_names_the_patient(tmp_path: Path) -> None:
    rows = DEFAULT_ROWS + [("P5", "0", "M", "1/1/1950", "")]
    cohort = load_cohort(write_lymph_cohort(tmp_path, rows=rows), progress=False)
    with pytest.raises(DataError, match="patient P5"):
        AttributeEncoder(["lymph_count"], missing="error").fit(cohort, cohort.ids)
