"""The three real samples in ../shared/data (skipped where absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from smearmil.data import load_cohort
from smearmil.data.cache import build_cache
from smearmil.data.images import Preprocessing
from smearmil.data.splits import make_splits


def _inspect(path: Path) -> dict:
    exe = Path(sys.executable).with_name("smearmil")
    result = subprocess.run(
        [str(exe), "data", "inspect", str(path), "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_inspect_lymphocytosis(shared_data: Path) -> None:
    report = _inspect(shared_data / "lymphocytosis-dev")
    assert report["layout"] == "lymphocytosis"
    assert report["patients"] == 80 and report["classes"] == {"reactive": 25, "tumoral": 55}
    assert {a["name"] for a in report["attributes"]} == {"age", "lymph_count", "gender"}
    assert all(a["missing"] == 0 for a in report["attributes"])


@pytest.mark.slow
def test_the_challenge_test_layout_reads_as_unlabelled_patients(shared_data: Path) -> None:
    report = _inspect(shared_data / "lymphocytosis-unlabelled")  # testset/<ID>/*.jpg + testset/testset_data.csv
    assert report["layout"] == "lymphocytosis" and report["patients"] == 42 and report["cells"] == 3258
    assert report["classes"] == {"reactive": 0, "tumoral": 0, "unlabelled": 42} and not report["problems"]


@pytest.mark.slow
def test_inspect_aml_apl(shared_data: Path) -> None:
    report = _inspect(shared_data / "aml-apl-dev")
    assert report["layout"] == "patient-folders"
    assert report["patients"] == 12 and report["classes"] == {"AML": 6, "APL": 6}
    assert [p["kind"] for p in report["problems"]] == ["unreadable_image"]  # a zero-filled file in the sample
    cohort = load_cohort(shared_data / "aml-apl-dev", progress=False)
    types = {t for p in cohort.patients for t in p.cell_types or []}
    assert {"Blast, no lineage spec", "Promyelocyte", "unknown"} <= types


@pytest.mark.slow
def test_inspect_blood_cells(shared_data: Path) -> None:
    report = _inspect(shared_data / "blood-cells-dev")
    assert report["layout"] == "single-cell" and report["cells"] == 480
    assert len(report["classes"]) == 8 and set(report["classes"].values()) == {60}


def test_real_cohort_splits_and_caches(shared_data: Path, tmp_path: Path) -> None:
    cohort = load_cohort(shared_data / "aml-apl-dev", progress=False)
    plan = make_splits(cohort, "kfold", folds=3, seed=0)
    for fold in plan.folds:
        assert {cohort[i].label for i in fold.test} == {"AML", "APL"}
    cache = build_cache(cohort.subset(cohort.ids[:2]), Preprocessing(size=64, crop=48), tmp_path, progress=False)
    bag = cache.bag(cohort.ids[0])
    assert bag.shape[1:] == (48, 48, 3) and bag.std() > 5 and np.asarray(bag).mean() > 50


@pytest.mark.slow
def test_a_final_model_predicts_the_unlabelled_cohort(shared_data: Path, tmp_path: Path) -> None:
    """The lab workflow on the real samples, at small settings: train --all on lymphocytosis-dev, then one
    row per patient of lymphocytosis-unlabelled and one row per readable cell."""
    import csv

    from typer.testing import CliRunner

    from smearmil.cli import app

    runner, cache = CliRunner(), tmp_path / "cache"
    small = ["--set", "image.size=32", "--set", "image.crop=null", "--epochs", "1"]
    args = ["train", shared_data / "lymphocytosis-dev", "--config", "cpu-cnn", "--all", *small]
    result = runner.invoke(app, [str(a) for a in [*args, "--out", tmp_path / "final", "--cache-dir", cache, "-q"]])
    assert result.exit_code == 0, result.output
    unlabelled = shared_data / "lymphocytosis-unlabelled"
    args = ["predict", tmp_path / "final", unlabelled, "--out", tmp_path / "p", "--cache-dir", cache, "-q"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with (tmp_path / "p" / "predictions.csv").open() as handle:
        predictions = list(csv.DictReader(handle))
    with (tmp_path / "p" / "cells.csv").open() as handle:
        cells = list(csv.DictReader(handle))
    readable = load_cohort(unlabelled, progress=False)
    assert len(predictions) == 42 == len(readable) and {r["label"] for r in predictions} == {""}
    assert len(cells) == sum(len(p.images) for p in readable.patients)
