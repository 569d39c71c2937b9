"""What a new user reads after `smearmil predict`: a worklist with uncertain calls flagged, a closing tally,
a warning when the model is at chance; cell types from loose patient folders; the Python API's Table."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import smearmil
from smearmil.api import Table
from smearmil.cli.worklist import annotate, print_worklist
from smearmil.data.validation import load_cohort, load_patients
from smearmil.protocols.worklist import calls, chance_warning, tally_line

from .conftest import invoke, run_in_process
from .test_workflow import TINY, patient_folder_cohort

TWO = ["reactive", "tumoral"]
THREE = ["AML", "APL", "CML"]


def two_class_rows(tumoral: list[float], labels: list[str] | None = None) -> list[dict[str, Any]]:
    """predictions.csv rows of two classes, called at threshold 0.5."""
    labels = labels or [""] * len(tumoral)
    return [
        {
            "patient": f"P{i:02d}",
            "label": label,
            "prob_reactive": 1 - p,
            "prob_tumoral": p,
            "prediction": TWO[int(p >= 0.5)],
        }
        for i, (p, label) in enumerate(zip(tumoral, labels))
    ]


def three_class_rows(probabilities: list[tuple[float, float, float]]) -> list[dict[str, Any]]:
    return [
        {
            "patient": f"Q{i}",
            "label": "",
            **{f"prob_{c}": v for c, v in zip(THREE, p)},
            "prediction": THREE[np.argmax(p)],
        }
        for i, p in enumerate(probabilities)
    ]


def said(text: str) -> str:
    return " ".join(text.split())


# the worklist: calls, their uncertainty and the tally


def test_calls_inside_the_band_around_the_threshold_are_uncertain_and_counted_apart() -> None:
    rows = two_class_rows([0.95, 0.61, 0.59, 0.45, 0.40, 0.05, 0.39])
    found = calls(rows, TWO, threshold=0.5)
    assert [c.uncertain for c in found] == [False, False, True, True, False, False, False]
    assert [c.probability for c in found] == [r["prob_tumoral"] for r in rows]  # the positive class's
    assert tally_line(found, TWO, 0.5) == "7 patients: 3 reactive, 2 tumoral, 2 uncertain (tumoral 0.40-0.60)"
    # a tuned threshold moves the band with it; a wider band takes in more patients
    moved = calls(rows, TWO, threshold=0.3, band=0.2)
    assert [c.uncertain for c in moved] == [False, False, False, True, True, False, True]
    assert tally_line(moved, TWO, 0.3, 0.2).endswith("3 uncertain (tumoral 0.10-0.50)")
    edges = two_class_rows([0.45, 0.15])  # a band's limits are outside it, whatever the float arithmetic
    assert [c.uncertain for c in calls(edges, TWO, threshold=0.3, band=0.15)] == [False, False]
    assert tally_line(calls(rows[:1], TWO, 0.5), TWO, 0.5).startswith("1 patient: ")


def test_more_classes_are_uncertain_when_the_two_likeliest_are_close() -> None:
    rows = three_class_rows([(0.8, 0.1, 0.1), (0.45, 0.35, 0.2), (0.2, 0.3, 0.5), (0.1, 0.7, 0.2)])
    found = calls(rows, THREE, threshold=0.5)
    assert [(c.call, c.uncertain) for c in found] == [("AML", False), ("AML", True), ("CML", False), ("APL", False)]
    assert [c.probability for c in found] == [0.8, 0.45, 0.5, 0.7]  # the call's probability
    assert tally_line(found, THREE, 0.5) == "4 patients: 1 AML, 1 APL, 1 CML, 1 uncertain (top two classes within 0.20)"


# the chance-level warning


def test_a_model_at_chance_is_warned_of_and_a_confident_one_is_not(tmp_path: Path) -> None:
    hedged = two_class_rows(list(np.linspace(0.38, 0.55, 42)))
    warning = chance_warning(hedged, TWO, tmp_path / "run")
    assert warning is not None
    assert "no patient of 42 is called with confidence" in warning and "within 0.38-0.55" in warning
    assert "no better than chance" in warning and f"--config {tmp_path / 'run' / 'config.yaml'}" in warning
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text("{}")  # a cv folder: its own figures
    assert f"{tmp_path / 'run' / 'summary.json'}" in str(chance_warning(hedged, TWO, tmp_path / "run"))
    # one patient called with confidence, either way, is enough to speak of a model that learned something
    assert chance_warning(two_class_rows([0.45] * 9 + [0.70]), TWO) is None
    assert chance_warning(two_class_rows([0.45] * 9 + [0.30]), TWO) is None
    assert chance_warning(two_class_rows([0.45] * 9 + [0.69]), TWO) is not None
    # a constant hedge away from the threshold is still a hedge: every call at 0.62 says nothing either
    assert chance_warning(two_class_rows([0.62] * 10), TWO) is not None
    assert chance_warning(two_class_rows([0.5] * 4), TWO) is None  # too few patients to judge a model by
    assert chance_warning(three_class_rows([(0.4, 0.35, 0.25)] * 6), THREE) is not None
    assert chance_warning(three_class_rows([(0.4, 0.35, 0.25)] * 5 + [(0.8, 0.1, 0.1)]), THREE) is None


# the printed worklist


def predict_result(tumoral: list[float], labels: list[str] | None = None) -> dict[str, Any]:
    """What `predict_to` returns (the fields the worklist reads), for a model folder that does not exist."""
    return {
        "model": "runs/final",
        "model_kind": "model",
        "class_names": TWO,
        "positive_class": "tumoral",
        "threshold": 0.5,
        "n_patients": len(tumoral),
        "n_cells": 10 * len(tumoral),
        "files": ["predictions.csv", "cells.csv", "run.json"],
        "patients": two_class_rows(tumoral, labels),
    }


def printed(result: dict[str, Any], quiet: bool = False, top: int | None = None) -> list[str]:
    console = Console(file=io.StringIO(), width=120, markup=False)
    found = annotate(result, 0.1)
    print_worklist(console, result, found, Path("runs/new"), 0.1, quiet, top, Path("/data/new"))
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_the_worklist_shows_one_line_per_patient_then_the_files_and_the_tally() -> None:
    result = predict_result([0.91, 0.52, 0.08], ["tumoral", "reactive", "reactive"])
    lines = printed(result)
    assert said(lines[0]) == "model: runs/final (model); threshold 0.50"
    assert said(lines[1]) == "patient call P(tumoral) true"
    rows = [said(line) for line in lines if line.startswith("P0")]
    assert rows == ["P00 tumoral 0.910 tumoral", "P01 tumoral 0.520 reactive uncertain", "P02 reactive 0.080 reactive"]
    assert lines[-2] == "-> runs/new/: predictions.csv, cells.csv, run.json (30 cells)"
    assert lines[-1] == "3 patients: 1 reactive, 1 tumoral, 1 uncertain (tumoral 0.40-0.60)"
    assert [r["uncertain"] for r in result["patients"]] == [False, True, False]  # --json gets the flags too
    assert result["tally"] == {"reactive": 1, "tumoral": 1, "uncertain": 1} and result["chance_warning"] is None
    assert printed(predict_result([0.91, 0.52, 0.08]), quiet=True) == [lines[-1]]


def test_the_worklist_of_more_classes_and_the_cells_asked_for() -> None:
    result = {**predict_result([]), "class_names": THREE, "positive_class": None}
    result["patients"] = three_class_rows([(0.1, 0.8, 0.1), (0.4, 0.1, 0.5)])
    for row in result["patients"]:
        row["top_cells"] = [{"file": f"/data/new/{row['patient']}/Blast/a.jpg", "contribution": 0.25}]
        row["bottom_cells"] = [{"file": f"/elsewhere/{row['patient']}.jpg", "contribution": -0.5}]
    lines = [said(line) for line in printed(result, top=1)]
    assert lines[1] == "patient call P(call)" and lines[3:5] == ["Q0 APL 0.800", "Q1 CML 0.500 uncertain"]
    cells = lines[lines.index("Q1 CML 0.500 uncertain") + 1 :]
    assert (
        cells[0]
        == "cells, 1 each way (logit contribution; + pushes toward the predicted class, paths under /data/new):"
    )
    assert cells[1:5] == [
        "Q0 +0.2500 Q0/Blast/a.jpg",
        "Q0 -0.5000 /elsewhere/Q0.jpg",
        "Q1 +0.2500 Q1/Blast/a.jpg",
        "Q1 -0.5000 /elsewhere/Q1.jpg",
    ]
    assert lines[-1] == "2 patients: 0 AML, 1 APL, 0 CML, 1 uncertain (top two classes within 0.20)"


# the command on a tiny trained run (at chance: two epochs on twelve patients)


@pytest.fixture(scope="module")
def tiny_run(sim_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``train --all`` of test_workflow's tiny mean-pooling CNN, and the image cache it used."""
    work = tmp_path_factory.mktemp("tiny")
    config, run, cache = work / "tiny.yaml", work / "run", work / "k"
    config.write_text(TINY)
    invoke("train", sim_cohort, "--config", config, "--all", "--out", run, "--cache-dir", cache, "-q")
    return run, cache


@pytest.fixture
def typed(sim_cohort: Path, tmp_path: Path) -> Path:
    """The simulated cohort as patient folders with cell-type sub-folders."""
    return patient_folder_cohort(sim_cohort, tmp_path / "dx", cell_types=True)


@pytest.mark.slow
def test_predict_prints_a_tally_and_warns_of_a_model_at_chance(
    tiny_run: tuple[Path, Path], typed: Path, tmp_path: Path
) -> None:
    run, cache = tiny_run
    cohort = typed
    loose = sorted(p for p in cohort.iterdir() if p.is_dir())
    done = run_in_process("predict", run, *loose, "--out", tmp_path / "p", "--cache-dir", cache)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "p" / "predictions.csv").open() as handle:
        predictions = list(csv.DictReader(handle))
    expected = chance_warning(predictions, TWO, run)
    assert expected is not None, "the tiny run is expected at chance; the test needs one that is"
    assert said(expected) in said(done.stderr)
    lines = done.stdout.strip().splitlines()
    tumoral = sum(r["prediction"] == "tumoral" and not 0.4 < float(r["prob_tumoral"]) < 0.6 for r in predictions)
    uncertain = sum(0.4 < float(r["prob_tumoral"]) < 0.6 for r in predictions)
    reactive = 12 - tumoral - uncertain
    assert (
        lines[-1] == f"12 patients: {reactive} reactive, {tumoral} tumoral, {uncertain} uncertain (tumoral 0.40-0.60)"
    )
    assert lines[-2].startswith(f"-> {tmp_path / 'p'}/: predictions.csv, cells.csv")
    assert str(cohort) not in done.stdout  # no cell paths unless --top asks for them
    # loose folders name their cells' types from their sub-folders, as the whole cohort does
    with (tmp_path / "p" / "cells.csv").open() as handle:
        assert {r["cell_type"] for r in csv.DictReader(handle)} == {"Blast", "Lymphocyte"}
    # --quiet: the tally alone on stdout, the warning still on stderr
    quiet = run_in_process("predict", run, *loose, "--out", tmp_path / "q", "--cache-dir", cache, "-q")
    assert quiet.returncode == 0 and quiet.stdout.splitlines() == [lines[-1]]
    assert said(expected) in said(quiet.stderr)
    # --json keeps its fields and adds the worklist's
    as_json = run_in_process("predict", run, *loose, "--out", tmp_path / "j", "--cache-dir", cache, "--json")
    result = json.loads(as_json.stdout)
    assert result["chance_warning"] == expected and sum(result["tally"].values()) == 12
    assert all(len(p["top_cells"]) == 3 and isinstance(p["uncertain"], bool) for p in result["patients"])


# loose patient folders


def test_loose_patient_folders_read_cell_types_as_the_whole_cohort_does(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = patient_folder_cohort(sim_cohort, tmp_path / "dx", "Diagnosis", cell_types=True)
    (cohort / "P000" / "Unsigned slides").mkdir()  # a folder that carries no type
    moved = next((cohort / "P000" / "Blast").glob("*.jpg"))
    moved.rename(cohort / "P000" / "Unsigned slides" / moved.name)
    whole = load_cohort(cohort, progress=False)
    loose = load_patients([cohort / "P000", cohort / "P001"], progress=False)
    for pid in ("P000", "P001"):
        assert loose[pid].images == whole[pid].images and loose[pid].cell_types == whole[pid].cell_types
    assert set(loose["P000"].cell_types or []) == {"Blast", "Lymphocyte", "unknown"}
    flat = load_patients([sim_cohort / "trainset" / "P000"], progress=False)
    assert flat["P000"].cell_types is None  # no sub-folder: no type, as the lymphocytosis layout reads it


# the Python API's Table


def test_a_table_is_indexed_by_row_and_column_and_iterated_by_row() -> None:
    table = Table([{"patient": f"P{i}", "prob_tumoral": i / 10} for i in range(4)], ["patient", "prob_tumoral"])
    assert len(table) == 4 and [r["patient"] for r in table] == ["P0", "P1", "P2", "P3"]
    assert table[0] == {"patient": "P0", "prob_tumoral": 0.0} and table[-1]["patient"] == "P3"
    assert table[np.int64(2)]["patient"] == "P2"
    assert isinstance(table[1:3], Table) and [r["patient"] for r in table[1:3]] == ["P1", "P2"]
    assert table[::-1][0]["patient"] == "P3" and table[1:3].columns == table.columns
    np.testing.assert_allclose(table["prob_tumoral"], [0.0, 0.1, 0.2, 0.3])
    with pytest.raises(IndexError, match="row 4 of a table of 4 rows"):
        table[4]
    with pytest.raises(KeyError, match="no column 'prob_x'"):
        table["prob_x"]


def test_to_pandas_without_pandas_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    table = Table([{"patient": "P0", "prob_tumoral": 0.2}], ["patient", "prob_tumoral"])
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas sees
    with pytest.raises(ImportError, match=r"pip install smearmil\[pandas\]"):
        table.to_pandas()


def test_to_pandas_with_pandas() -> None:
    pd = pytest.importorskip("pandas")
    table = Table(
        [{"patient": "P0", "prob_tumoral": 0.2}, {"patient": "P1", "prob_tumoral": 0.9}], ["patient", "prob_tumoral"]
    )
    frame = table.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["patient", "prob_tumoral"]
    assert frame["prob_tumoral"].tolist() == [0.2, 0.9]


@pytest.mark.slow
def test_model_cells_rows_name_the_cell_types_of_loose_folders(tiny_run: tuple[Path, Path], typed: Path) -> None:
    run, cache = tiny_run
    cohort = typed
    model = smearmil.load(run, cache_dir=cache)
    table = model.predict([cohort / "P000", cohort / "P001"])
    assert [r["patient"] for r in table] == ["P000", "P001"] and table[-1]["patient"] == "P001"
    assert model.cells is not None
    first = model.cells[0]
    assert first["patient"] == "P000" and first["cell_type"] in {"Blast", "Lymphocyte"}
