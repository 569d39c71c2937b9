"""A cohort built from patient folders given one by one (for prediction), with optional attributes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .cohort import Cohort, Patient
from .dates import age_at, parse_dob
from .options import DataOptions
from .problems import DataError, Problem
from .readers.common import list_images
from .table import parse_gender, parse_number, read_table, snake_case

ID_COLUMNS = ("id", "patient", "patient_id")


def cohort_from_folders(
    folders: Sequence[str | Path], attributes_csv: str | Path | None = None, options: DataOptions | None = None
) -> Cohort:
    """One unlabelled patient per folder (id = folder name). Attributes come from a CSV whose columns are
    attribute names (``age``, ``lymph_count``, ...) or the lymphocytosis columns (``DOB``, ``LYMPH_COUNT``)."""
    options = options or DataOptions()
    problems: list[Problem] = []
    patients = []
    for folder in (Path(f).resolve() for f in folders):
        if not folder.is_dir():
            problems.append(Problem("missing_folder", str(folder), "is not a folder of cell images"))
            continue
        images = list_images(folder, problems)
        if not images:
            problems.append(Problem("empty_bag", str(folder), "holds no image files (jpg, png, tif, bmp)"))
            continue
        patients.append(Patient(folder.name, None, {}, images))
    names: list[str] = []
    if attributes_csv is not None:
        names = _attach_attributes(patients, Path(attributes_csv), options, problems)
    if [p for p in problems if p.severity == "error"]:
        raise DataError(problems)
    root = Path(folders[0]).parent if folders else Path(".")
    return Cohort(root.resolve(), "folders", patients, [], names, problems)


def _attach_attributes(patients: list[Patient], path: Path, options: DataOptions, problems: list[Problem]) -> list[str]:
    table = read_table(path)
    id_col = next((c for c in table.columns if snake_case(c) in ID_COLUMNS), table.columns[0])
    rows = {row[id_col]: i for i, row in enumerate(table.rows)}
    columns = [c for c in table.columns if c != id_col]
    names = ["age" if snake_case(c) == "dob" else snake_case(c) for c in columns]
    for p in patients:
        if p.id not in rows:
            problems.append(Problem("missing_row", f"{path.name}", f"no row for patient {p.id}; add one"))
            continue
        i = rows[p.id]
        for column, name in zip(columns, names):
            text = table.rows[i][column]
            value: float | None
            if snake_case(column) == "dob":
                dob = parse_dob(text)
                value = age_at(dob.value, options.reference_date) if dob.value else math.nan
            elif name in ("gender", "sex"):
                value = parse_gender(text)
            else:
                value = parse_number(text, table.delimiter)
            if value is None:
                problems.append(Problem("non_numeric_attribute", table.where(i, p.id), f"{column} is {text!r}"))
                value = math.nan
            p.attributes[name] = value
    return names
