"""One test per bad input: the problem names the offending file, row or patient and says what to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smearmil.data import DataError, DataOptions, load, load_cohort
from smearmil.data.problems import Problem

from .conftest import DEFAULT_ROWS, write_image, write_lymph_cohort


def problems_of(root: Path, **options: object) -> list[Problem]:
    return load(root, DataOptions(**options), progress=False).problems


def only(problems: list[Problem], kind: str) -> Problem:
    found = [p for p in problems if p.kind == kind]
    assert len(found) == 1, problems
    return found[0]


def test_missing_required_columns_names_file_and_columns(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=[r[:4] for r in DEFAULT_ROWS], header="ID,LABEL,GENDER,DOB")
    with pytest.raises(DataError) as info:
        load_cohort(root, progress=False)
    problem = only(info.value.problems, "missing_columns")
    assert problem.where.endswith("trainset_true.csv") and "LYMPH_COUNT" in problem.message


def test_id_without_folder_names_row_and_patient(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, folders=["P1", "P2", "P3"])
    problem = only(problems_of(root), "missing_folder")
    assert problem.where == "trainset_true.csv line 5 (patient P4)"
    assert "P4" not in load_cohort(root, progress=False)


def test_folder_without_row_names_the_folder(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, folders=["P1", "P2", "P3", "P4", "P9"])
    problem = only(problems_of(root), "orphan_folder")
    assert problem.where.endswith("trainset/P9")


def test_empty_bag_names_the_patient(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path)
    for f in (root / "trainset" / "P3").iterdir():
        f.unlink()
    problem = only(problems_of(root), "empty_bag")
    assert problem.where == "patient P3"
    assert "P3" not in load_cohort(root, progress=False)


def test_unreadable_and_truncated_images_are_skipped_and_named(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path)
    (root / "trainset" / "P1" / "broken.jpg").write_bytes(b"not an image at all")
    good = write_image(root / "trainset" / "P2" / "big.jpg", seed=7, size=96).read_bytes()
    (root / "trainset" / "P2" / "big.jpg").write_bytes(good[: len(good) // 2])
    problems = [p for p in problems_of(root) if p.kind == "unreadable_image"]
    assert sorted(Path(p.where).name for p in problems) == ["big.jpg", "broken.jpg"]
    assert any("truncated" in p.message for p in problems)
    cohort = load_cohort(root, progress=False)
    assert cohort["P1"].n_cells == 3 and cohort["P2"].n_cells == 3


def test_duplicate_patient_ids_name_both_lines(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=DEFAULT_ROWS + [("P2", "0", "M", "1/1/1950", "3.0")])
    with pytest.raises(DataError) as info:
        load_cohort(root, progress=False)
    problem = only(info.value.problems, "duplicate_patient")
    assert problem.where == "trainset_true.csv line 6 (patient P2)" and "line 3" in problem.message


def test_duplicate_images_in_a_bag_are_reported_and_dropped(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path)
    bag = root / "trainset" / "P1"
    (bag / "copy.jpg").write_bytes((bag / "P1_0.jpg").read_bytes())
    problem = only(problems_of(root), "duplicate_image")
    assert problem.where.endswith("copy.jpg") and "P1_0.jpg" in problem.message and "P1" in problem.message
    assert load_cohort(root, progress=False)["P1"].n_cells == 3
    kept = load_cohort(root, DataOptions(drop_duplicate_images=False), progress=False)
    assert kept["P1"].n_cells == 4


def test_label_outside_class_set_names_the_row(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=DEFAULT_ROWS[:3] + [("P4", "2", "M", "1/1/1950", "3.0")])
    with pytest.raises(DataError) as info:
        load_cohort(root, progress=False)
    problem = only(info.value.problems, "unknown_label")
    assert problem.where == "trainset_true.csv line 5 (patient P4)" and "'2'" in problem.message


def test_non_numeric_attribute_names_row_column_and_value(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=DEFAULT_ROWS[:3] + [("P4", "1", "M", "1/1/1950", "12.5 G/L")])
    with pytest.raises(DataError) as info:
        load_cohort(root, progress=False)
    problem = only(info.value.problems, "non_numeric_attribute")
    assert problem.where == "trainset_true.csv line 5 (patient P4)"
    assert "LYMPH_COUNT" in problem.message and "12.5 G/L" in problem.message


def test_row_with_extra_values_is_reported(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=DEFAULT_ROWS[:3] + [("P4", "1", "M", "1/1/1950", "12", "5")])
    assert only(problems_of(root), "malformed_row").where == "trainset_true.csv line 5"


def test_missing_value_follows_the_policy(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=DEFAULT_ROWS[:3] + [("P4", "1", "M", "1/1/1950", "")])
    problem = only(problems_of(root), "missing_value")
    assert problem.severity == "warning" and "impute" in problem.message
    assert problem.where == "trainset_true.csv line 5 (patient P4)"
    with pytest.raises(DataError) as info:
        load_cohort(root, DataOptions(missing_policy="error"), progress=False)
    assert only(info.value.problems, "missing_value").where.endswith("(patient P4)")


def test_impossible_and_ambiguous_dates_are_reported_by_row(tmp_path: Path) -> None:
    rows = DEFAULT_ROWS[:2] + [("P3", "0", "F", "2/30/1960", "4.2"), ("P4", "1", "M", "25/12/1950", "3.0")]
    problems = problems_of(write_lymph_cohort(tmp_path, rows=rows))
    assert only(problems, "bad_date").where == "trainset_true.csv line 4 (patient P3)"
    ambiguous = only(problems, "ambiguous_date")
    assert ambiguous.where == "trainset_true.csv line 5 (patient P4)" and "1950-12-25" in ambiguous.message


def test_patient_folder_layout_unknown_label_and_missing_columns(tmp_path: Path) -> None:
    root = tmp_path / "aml"
    (root).mkdir()
    (root / "patients.csv").write_text("Patient_ID,Diagnosis,Age\nA,APL,50\nB,AML,60\n")
    write_image(root / "A" / "Blast, no lineage spec" / "1.jpg", 1)
    write_image(root / "B" / "Unsigned slides" / "2.jpg", 2)
    with pytest.raises(DataError) as info:
        load_cohort(root, DataOptions(class_names=["AML", "CML"]), progress=False)
    assert only(info.value.problems, "unknown_label").where == "patients.csv line 2 (patient A)"
    with pytest.raises(DataError) as info:
        load_cohort(root, DataOptions(label_column="Subtype"), progress=False)
    assert "Subtype" in only(info.value.problems, "missing_columns").message


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("smearmil")
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_cli_reports_bad_data_without_a_traceback(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path, rows=DEFAULT_ROWS + [("P2", "1", "M", "1/1/1950", "abc")])
    result = _cli("data", "inspect", str(root), "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    kinds = {p["kind"] for p in report["problems"]}
    assert {"duplicate_patient", "non_numeric_attribute"} <= kinds
    assert all(set(p) == {"kind", "where", "message"} for p in report["problems"])
    for command in (["data", "split", str(root), "--out", str(tmp_path / "s.json")], ["data", "cache", str(root)]):
        result = _cli(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "line 6 (patient P2)" in result.stderr


@pytest.mark.slow
def test_cli_missing_folder_and_undetectable_layout(tmp_path: Path) -> None:
    for path in (tmp_path / "nowhere", tmp_path):
        result = _cli("data", "inspect", str(path), "--json")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert json.loads(result.stdout)["problems"][0]["where"] == str(path)


def test_a_challenge_folder_reads_its_labelled_and_its_unlabelled_patients(tmp_path: Path) -> None:
    root = write_lymph_cohort(tmp_path / "challenge")  # trainset/<ID>/ and trainset/trainset_true.csv
    testset = root / "testset"
    testset.mkdir()
    (testset / "testset_data.csv").write_text(
        "ID,LABEL,GENDER,DOB,LYMPH_COUNT\nT1,-1,M,1/17/1946,5.76\nT2,-1,F,3/5/1940,32.0\n"
    )
    for k, pid in enumerate(("T1", "T2")):
        write_image(testset / pid / "cell.jpg", seed=900 + k)
    cohort = load_cohort(root, progress=False)
    assert cohort.ids == ["P1", "P2", "P3", "P4", "T1", "T2"]
    assert [p.label for p in cohort.patients][-2:] == [None, None] and cohort["T2"].group == "testset"
    assert cohort.class_counts() == {"reactive": 2, "tumoral": 2}
    shutil.copytree(testset, tmp_path / "unlabelled" / "testset")  # the test set alone, as the challenge shipped it
    unlabelled = load_cohort(tmp_path / "unlabelled", progress=False)
    assert unlabelled.ids == ["T1", "T2"] and not unlabelled.labelled() and unlabelled.n_cells == 2
