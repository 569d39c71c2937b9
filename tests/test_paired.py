"""`smearmil paired`: two CVs of one cohort compared fold by fold and over patients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smearmil.evaluation.paired import paired_comparison

from .conftest import invoke, run_in_process


@pytest.fixture(scope="module")
def two_cvs(sim_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("paired")
    (base / "logreg.yaml").write_text("kind: baseline\nbaseline: clinical/logreg\n")
    for name, config in (("nb", "clinical-nb"), ("logreg", base / "logreg.yaml")):
        invoke("cv", sim_cohort, "--config", config, "--folds", 2, "--seeds", "0,1", "--out", base / name, "-q")
    invoke("cv", sim_cohort, "--config", "clinical-nb", "--folds", 3, "--seeds", "0,1", "--out", base / "nb3", "-q")
    return base


def test_the_differences_are_those_of_the_folds_each_cv_reports(two_cvs: Path) -> None:
    result = json.loads(invoke("paired", two_cvs / "nb", two_cvs / "logreg", "--resamples", 200, "--json"))
    assert result["seeds"] == ["0", "1"] and result["patients"] == 12 and result["split"] == "test folds"
    for name, key in (("nb", "first"), ("logreg", "second")):
        summary = json.loads((two_cvs / name / "summary.json").read_text())
        folds = [f for s in ("0", "1") for f in summary["per_seed"][s]["folds"]]
        for metric in ("balanced_accuracy", "roc_auc"):
            values = [f[metric] for f in folds if f.get(metric) is not None]
            assert result["metrics"][metric][key] == pytest.approx(sum(values) / len(values), abs=1e-4)
    ba = result["metrics"]["balanced_accuracy"]
    assert ba["difference"] == pytest.approx(ba["first"] - ba["second"], abs=2e-4)
    assert ba["first_better"] + ba["second_better"] <= ba["folds"] == 4
    low, high = ba["ci95"]
    assert low <= high


def test_a_cv_against_itself_differs_by_nothing(two_cvs: Path) -> None:
    result = paired_comparison(two_cvs / "nb", two_cvs / "nb", resamples=100)
    for metric in result["metrics"].values():
        assert metric["difference"] == 0 and metric["ci95"] == [0, 0] and metric["first_better"] == 0


def test_other_folds_are_refused(two_cvs: Path) -> None:
    result = run_in_process("paired", two_cvs / "nb", two_cvs / "nb3")
    assert result.returncode != 0
    assert "used other folds; run both with the same --seeds and --folds" in " ".join(result.stderr.split())
