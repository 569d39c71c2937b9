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
    readable_dirs,
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


def listed_classes(root: Path) -> list[str] | None:
    """Names of labels 0, 1, ... from ``classes.txt`` (one per line), if the folder has one."""
    listed = root / "classes.txt"
    if listed.is_file():
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
        return names or None
    return None


def class_names_of(root: Path, asked: list[str] | None) -> list[str]:
    """The classes of labels 0, 1, ...: ``asked`` (a model's, or ``class_names``) must agree with the
    folder's ``classes.txt`` by name and order, or the labels would be read as other classes."""
    listed = listed_classes(root)
    if asked and listed and list(asked) != listed:
        raise DataError(
            [
                Problem(
                    "class_mismatch",
                    str(root / "classes.txt"),
                    f"lists the classes {listed} for labels 0, 1, ..., but {list(asked)} were asked for (the "
                    "model's classes, or class_names); the labels would mean other classes. Fix classes.txt, or "
                    "use a model trained on these classes",
                )
            ]
        )
    return list(asked or listed or DEFAULT_CLASSES)


def looks_like(root: Path) -> bool:
    for path in find_tables(root):
        header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
        if header and {"ID", "LABEL"} <= {c.strip().upper() for c in header[0].replace(";", ",").split(",")}:
            return True
    return False


def _patient_folders(root: Path, problems: list[Problem]) -> dict[str, tuple[Path, str | None]]:
    """Map folder name -> (folder, split) for ``<root>/<split>/<ID>`` and ``<root>/<ID>`` folders. A name
    found in two places (``trainset/P001`` and ``testset/P001``) is an error naming both: which cells are
    whose cannot be guessed."""
    folders: dict[str, tuple[Path, str | None]] = {}
    for child in sorted(p for p in readable_dirs(root, problems) if not p.name.startswith(".")):
        # a split folder that cannot be listed (``lost+found``) only warns: a row it would serve says so
        subdirs = [d for d in sorted(readable_dirs(child, problems, "warning")) if not d.name.startswith(".")]
        found = [(d, child.name) for d in subdirs] if subdirs and not any(child.glob("*.jp*g")) else [(child, None)]
        for folder, split in found:
            first = folders.setdefault(folder.name, (folder, split))
            if first[0] != folder:
                problems.append(
                    Problem(
                        "duplicate_patient",
                        str(folder),
                        f"patient {folder.name} has two image folders: {first[0]} and {folder}; a patient's cells "
                        "must be in one folder. Rename or merge one of them",
                    )
                )
    return folders


def read(root: Path, options: DataOptions) -> Cohort:
    tables = [options.csv] if options.csv else find_tables(root)
    if not tables:
        raise DataError(
            [Problem("missing_csv", str(root), "no trainset/trainset_true.csv or clinical_annotation.csv; pass --csv")]
        )
    class_names = class_names_of(root, options.class_names)
    problems: list[Problem] = []
    patients: list[Patient] = []
    folders = _patient_folders(root, problems)
    listed: set[str] = set()
    rows_of: dict[str, tuple[Path, str]] = {}  # patient -> its table and row (one row over every table)
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
            first_table, first = rows_of.setdefault(patient.id, (table_path, table.where(i)))
            if first != table.where(i) or first_table != table_path:
                if first_table != table_path:  # the same table's repeats are reported by check_duplicate_ids
                    problems.append(
                        Problem(
                            "duplicate_patient",
                            table.where(i, patient.id),
                            f"patient {patient.id} already has a row in {first_table} ({first}); keep one row "
                            "per patient over all tables",
                        )
                    )
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
    patients, empty = drop_empty_bags(patients, root)
    return Cohort(
        root=root,
        layout="lymphocytosis",
        patients=patients,
        class_names=list(class_names),
        attribute_names=list(ATTRIBUTES),
        problems=problems + empty,
        meta={"reference_date": options.reference_date.isoformat(), "tables": [str(t) for t in tables]},
    )


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
