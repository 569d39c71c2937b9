"""The lymphocytosis layout: ``<root>/<split>/<ID>/*.jpg`` with ``ID, LABEL, GENDER, DOB, LYMPH_COUNT``."""

from __future__ import annotations

import math
from pathlib import Path

from ..cohort import Cohort, Patient
from ..dates import age_at, parse_dob
from ..layouts import LAYOUTS
from ..options import DataOptions
from ..problems import DataError, Problem
from ..table import Table, read_table
from .common import (
    check_duplicate_ids,
    drop_empty_bags,
    implausible,
    list_images,
    missing_value_problem,
    parse_attribute,
    parse_label,
)

REQUIRED = ("ID", "LABEL", "GENDER", "DOB", "LYMPH_COUNT")
DEFAULT_CLASSES = ["reactive", "tumoral"]
ATTRIBUTES = ["age", "lymph_count", "gender"]


def find_tables(root: Path) -> list[Path]:
    """The clinical tables of a lymphocytosis-layout folder, most authoritative first: the challenge's
    ``trainset/trainset_true.csv`` (labels) and ``testset/testset_data.csv`` (LABEL -1, diagnosis never
    released), or one ``clinical_annotation.csv`` at the root."""
    if (root / "clinical_annotation.csv").is_file():
        return [root / "clinical_annotation.csv"]
    labelled = sorted(root.glob("*/*_true.csv")) + sorted(root.glob("*_true.csv"))
    unlabelled = sorted(root.glob("*/*_data.csv")) + sorted(root.glob("*_data.csv"))
    return labelled + unlabelled


def default_classes(root: Path) -> list[str]:
    """Names of labels 0, 1, ...: from ``classes.txt`` (one per line) if present, else reactive, tumoral."""
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        if names:
            return names
    return list(DEFAULT_CLASSES)


def looks_like(root: Path) -> bool:
    for path in find_tables(root):
        header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
        if header and {"ID", "LABEL"} <= {c.strip().upper() for c in header[0].replace(";", ",").split(",")}:
            return True
    return False


def _patient_folders(root: Path) -> dict[str, tuple[Path, str | None]]:
    """Map folder name -> (folder, split) for ``<root>/<split>/<ID>`` and ``<root>/<ID>`` folders."""
    folders: dict[str, tuple[Path, str | None]] = {}
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        subdirs = [d for d in sorted(child.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        if subdirs and not any(f.is_file() for f in child.glob("*.jp*g")):
            for d in subdirs:
                folders.setdefault(d.name, (d, child.name))
        else:
            folders.setdefault(child.name, (child, None))
    return folders


def read(root: Path, options: DataOptions) -> Cohort:
    tables = [options.csv] if options.csv else find_tables(root)
    if not tables:
        raise DataError(
            [Problem("missing_csv", str(root), "no trainset/trainset_true.csv or clinical_annotation.csv; pass --csv")]
        )
    class_names = options.class_names or default_classes(root)
    problems: list[Problem] = []
    patients: list[Patient] = []
    folders = _patient_folders(root)
    listed: set[str] = set()
    for table_path in tables:
        table = read_table(table_path)
        columns = {name: table.column(name) for name in REQUIRED}
        absent = [name for name, col in columns.items() if col is None]
        if absent:
            raise DataError(
                [
                    Problem(
                        "missing_columns",
                        str(table_path),
                        f"lacks column(s) {', '.join(absent)}; the lymphocytosis layout needs {', '.join(REQUIRED)}. "
                        "Rename them, or use --layout patient-folders with --id-column/--label-column/--attributes",
                    )
                ]
            )
        problems += table.problems + check_duplicate_ids(table, columns["ID"])  # type: ignore[arg-type]
        listed.update(row[columns["ID"]] for row in table.rows)  # type: ignore[index]
        for i, row in enumerate(table.rows):
            patient, row_problems = _read_row(table, i, row, columns, class_names, options)  # type: ignore[arg-type]
            problems += row_problems
            if patient is None:
                continue
            folder = folders.get(patient.id)
            if folder is None:
                problems.append(
                    Problem(
                        "missing_folder",
                        table.where(i, patient.id),
                        f"no image folder {patient.id}/ under {root}; patient left out. Add the folder or drop the row",
                        severity="warning",
                    )
                )
                continue
            patient.images, patient.group = list_images(folder[0], problems), folder[1]
            patients.append(patient)
    for name, (orphan, _) in folders.items():
        if name not in listed and list_images(orphan):
            problems.append(
                Problem(
                    "orphan_folder",
                    str(orphan),
                    "image folder without a row in the clinical table; ignored. Add a row for this patient",
                    severity="warning",
                )
            )
    patients, empty = drop_empty_bags(_unique(patients), root)
    return Cohort(
        root=root,
        layout="lymphocytosis",
        patients=patients,
        class_names=list(class_names),
        attribute_names=list(ATTRIBUTES),
        problems=problems + empty,
        meta={"reference_date": options.reference_date.isoformat(), "tables": [str(t) for t in tables]},
    )


def _unique(patients: list[Patient]) -> list[Patient]:
    seen: set[str] = set()
    out = []
    for p in patients:
        if p.id not in seen:
            seen.add(p.id)
            out.append(p)
    return out


def _read_row(
    table: Table, i: int, row: dict[str, str], columns: dict[str, str], class_names: list[str], options: DataOptions
) -> tuple[Patient | None, list[Problem]]:
    pid = row[columns["ID"]]
    problems: list[Problem] = []
    if not pid:
        return None, [Problem("missing_id", table.where(i), "the ID is empty; fill it in or delete the row")]
    label_text = row[columns["LABEL"]]
    label_value = parse_label(label_text, class_names)
    if label_value is None or not -1 <= label_value < len(class_names):
        allowed = ", ".join(f"{k} = {c}" for k, c in enumerate(class_names))
        problems.append(
            Problem(
                "unknown_label",
                table.where(i, pid),
                f"LABEL {label_text!r} is not in the class set (-1 = unlabelled, {allowed}); fix it or set class_names",
            )
        )
        return None, problems
    label = None if label_value == -1 else class_names[label_value]

    attributes: dict[str, float] = {}
    dob = parse_dob(row[columns["DOB"]])
    if dob.value is None:
        attributes["age"] = math.nan
        problems.append(_date_problem(table, i, pid, dob.note or "", options))
    else:
        age = age_at(dob.value, options.reference_date)
        if not 0 <= age <= 120:
            attributes["age"] = math.nan
            problems.append(
                _date_problem(
                    table,
                    i,
                    pid,
                    f"DOB {dob.value.isoformat()} gives age {age:.1f} at {options.reference_date.isoformat()}",
                    options,
                )
            )
        else:
            attributes["age"] = age
            if dob.note:
                problems.append(Problem("ambiguous_date", table.where(i, pid), f"DOB {dob.note}; check it", "warning"))
    attributes["lymph_count"], count_problems = parse_attribute(table, i, columns["LYMPH_COUNT"], options, pid)
    if attributes["lymph_count"] <= 0:
        count_problems.append(
            Problem("non_numeric_attribute", table.where(i, pid), "LYMPH_COUNT must be positive (10^9/L); fix it")
        )
        attributes["lymph_count"] = math.nan
    elif found := implausible("lymph_count", attributes["lymph_count"], table.where(i, pid), "LYMPH_COUNT (10^9/L)"):
        count_problems.append(found)
        attributes["lymph_count"] = math.nan
    attributes["gender"], gender_problems = parse_attribute(table, i, columns["GENDER"], options, pid)
    return Patient(id=pid, label=label, attributes=attributes), problems + count_problems + gender_problems


def _date_problem(table: Table, i: int, pid: str, note: str, options: DataOptions) -> Problem:
    missing = missing_value_problem(table.where(i, pid), "age", options)
    return Problem("bad_date", missing.where, f"DOB: {note}; {missing.message}", missing.severity)


@LAYOUTS.register("lymphocytosis")
class LymphocytosisLayout:
    detect_order = 20
    expects = "trainset/trainset_true.csv or clinical_annotation.csv with ID and LABEL"
    looks_like = staticmethod(looks_like)
    read = staticmethod(read)
