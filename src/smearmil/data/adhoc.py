"""A cohort built from patient folders given one by one (for prediction), with optional attributes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .cohort import UNKNOWN_CELL_TYPE, Cohort, Patient
from .dates import age_at, parse_dob
from .options import DataOptions
from .problems import DataError, Problem
from .readers.common import check_duplicate_ids, implausible, list_images, missing_value_problem, parse_attribute
from .readers.patient_folders import cell_type
from .table import Table, is_missing, read_table, snake_case

ID_COLUMNS = ("id", "patient", "patient_id")


def cohort_from_folders(
    folders: Sequence[str | Path], attributes_csv: str | Path | None = None, options: DataOptions | None = None
) -> Cohort:
    """One unlabelled patient per folder (id = folder name). Attributes come from a CSV whose columns are
    attribute names (``age``, ``lymph_count``, ...) or the lymphocytosis columns (``DOB``, ``LYMPH_COUNT``).
    Cell types come from sub-folders, as in the patient-folder layout (``<ID>/Promyelocyte/x.jpg``)."""
    options = options or DataOptions()
    problems: list[Problem] = []
    patients: list[Patient] = []
    given: dict[str, Path] = {}  # patient id (folder name) -> its folder
    for folder in (Path(f).resolve() for f in folders):
        if not folder.is_dir():
            problems.append(Problem("missing_folder", str(folder), "is not a folder of cell images"))
            continue
        first = given.setdefault(folder.name, folder)
        if first != folder or any(p.id == folder.name for p in patients):
            twice = "given twice" if first == folder else f"and {first} have the same name"
            problems.append(
                Problem(
                    "duplicate_patient",
                    str(folder),
                    f"patient {folder.name}: {folder} {twice}; a patient id is its folder's name, so each folder "
                    "must be named for one patient. Give each folder once, or rename one",
                )
            )
            continue
        images = list_images(folder, problems)
        if not images:
            problems.append(Problem("empty_bag", str(folder), "holds no image files (jpg, png, tif, bmp)"))
            continue
        patients.append(Patient(folder.name, None, {}, images, cell_types=_cell_types(images, folder)))
    names: list[str] = []
    if attributes_csv is not None:
        names = _attach_attributes(patients, Path(attributes_csv), options, problems)
    if [p for p in problems if p.severity == "error"]:
        raise DataError(problems)
    root = Path(folders[0]).parent if folders else Path(".")
    return Cohort(root.resolve(), "folders", patients, [], names, problems)


def _cell_types(images: list[Path], folder: Path) -> list[str] | None:
    """Each image's type from its sub-folder; None when no image has one (a flat folder of cells)."""
    types = [cell_type(image, folder) for image in images]
    return types if any(t != UNKNOWN_CELL_TYPE for t in types) else None


def _attach_attributes(patients: list[Patient], path: Path, options: DataOptions, problems: list[Problem]) -> list[str]:
    """Each patient's row of ``path``, checked as the cohort layouts check theirs: a missing value follows
    the missing-value policy, a date or number that cannot be read or lies out of range is an error."""
    table = read_table(path)
    id_col = next((c for c in table.columns if snake_case(c) in ID_COLUMNS), table.columns[0])
    problems += table.problems + check_duplicate_ids(table, id_col)
    rows = {row[id_col]: i for i, row in enumerate(table.rows)}
    columns = [c for c in table.columns if c != id_col]
    names = ["age" if snake_case(c) == "dob" else snake_case(c) for c in columns]
    for p in patients:
        if p.id not in rows:
            problems.append(Problem("missing_row", f"{path.name}", f"no row for patient {p.id}; add one"))
            continue
        i = rows[p.id]
        for column, name in zip(columns, names):
            if snake_case(column) == "dob":
                p.attributes[name] = _age(table, i, column, p.id, options, problems)
                continue
            p.attributes[name], found = parse_attribute(table, i, column, options, p.id)
            problems += found
            if out_of_range := implausible(name, p.attributes[name], table.where(i, p.id), column):
                problems.append(out_of_range)
    return names


def _age(table: Table, i: int, column: str, pid: str, options: DataOptions, problems: list[Problem]) -> float:
    """Age at ``options.reference_date`` from a date of birth; NaN and a problem when it cannot be used."""
    where = table.where(i, pid)
    dob = parse_dob(table.rows[i][column])
    if dob.value is None:
        missing = missing_value_problem(where, column, options)
        if is_missing(table.rows[i][column]):
            problems.append(missing)
        else:
            problems.append(Problem("bad_date", where, f"{column}: {dob.note}; fix the date"))
        return math.nan
    age = age_at(dob.value, options.reference_date)
    if not 0 <= age <= 120:
        problems.append(
            Problem("bad_date", where, f"{column} {dob.value.isoformat()} gives age {age:.1f}; fix the date")
        )
        return math.nan
    return age
