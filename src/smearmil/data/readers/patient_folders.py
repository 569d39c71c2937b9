"""The patient-folder layout: a clinical CSV and one folder per patient, images found recursively.

The immediate folder of an image is its cell type (``<ID>/Promyelocyte/x.jpg``); images directly in
the patient folder, or in folders that carry no type (``Unsigned slides``), have type ``unknown``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..cohort import UNKNOWN_CELL_TYPE, Cohort, Patient
from ..layouts import LAYOUTS
from ..options import DataOptions
from ..problems import DataError, Problem
from ..table import Table, is_missing, parse_gender, parse_number, read_table, snake_case
from .common import GENDER_NAMES, check_duplicate_ids, drop_empty_bags, implausible, list_images, parse_attribute

LABEL_HINTS = ("label", "diagnosis", "class", "target", "subtype", "outcome", "category")
UNTYPED_FOLDERS = re.compile(r"^(unsigned.*|unknown|unclassified|unlabell?ed|other|misc.*|none)$", re.IGNORECASE)
ALIASES = {"age_at_diagnosis": "age", "age_at_sampling": "age", "sex": "gender", "lymphocyte_count": "lymph_count"}


def looks_like(root: Path) -> bool:
    """Any clinical table (.csv or .tsv) at the top of the folder."""
    return any(p.suffix.lower() in (".csv", ".tsv") for p in root.iterdir() if p.is_file())


def find_table(root: Path) -> Path:
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".tsv"))
    if len(tables) == 1:
        return tables[0]
    what = "no .csv table" if not tables else f"several tables ({', '.join(t.name for t in tables)})"
    raise DataError([Problem("missing_csv", str(root), f"{what} at the top of the folder; name one with --csv")])


def _id_column(table: Table, folder_names: set[str], options: DataOptions) -> str:
    if options.id_column:
        return _require(table, options.id_column, "--id-column")
    overlap = {c: sum(row[c] in folder_names for row in table.rows) for c in table.columns}
    best = max(table.columns, key=lambda c: (overlap[c], "id" in c.lower()))
    if overlap[best] == 0:
        raise DataError(
            [
                Problem(
                    "missing_columns",
                    str(table.path),
                    "no column holds the names of the patient folders; name it with --id-column",
                )
            ]
        )
    return best


def _label_column(table: Table, id_column: str, options: DataOptions) -> str | None:
    """The label column; None when there is none and labels are optional (new patients to predict)."""
    if options.label_column:
        if not options.labels_required and table.column(options.label_column) is None:
            return None
        return _require(table, options.label_column, "--label-column")
    for hint in LABEL_HINTS:
        for c in table.columns:
            if c != id_column and hint in c.lower():
                return c
    if not options.labels_required:
        return None
    raise DataError(
        [
            Problem(
                "missing_columns",
                str(table.path),
                f"no label column (looked for {', '.join(LABEL_HINTS)}); name it with --label-column",
            )
        ]
    )


def _require(table: Table, name: str, flag: str) -> str:
    column = table.column(name)
    if column is None:
        raise DataError(
            [
                Problem(
                    "missing_columns",
                    str(table.path),
                    f"has no column {name!r} (it has {', '.join(table.columns)}); fix {flag}",
                )
            ]
        )
    return column


def _attribute_columns(table: Table, skip: set[str], options: DataOptions) -> list[str]:
    if options.attributes is not None:
        return [_require(table, name, "--attributes") for name in options.attributes]
    chosen = []
    for c in table.columns:
        if c in skip:
            continue
        values = [row[c] for row in table.rows if not is_missing(row[c])]
        if len(set(values)) < 2:
            continue  # constant or empty: carries no information
        if c.strip().lower() in GENDER_NAMES:
            parsed = [parse_gender(v) for v in values]
        else:
            parsed = [parse_number(v, table.delimiter) for v in values]
        if sum(v is not None for v in parsed) >= 0.8 * len(values):
            chosen.append(c)
    return chosen


def attribute_name(column: str) -> str:
    name = snake_case(column)
    return ALIASES.get(name, name)


def cell_type(image: Path, patient_folder: Path) -> str:
    parent = image.parent
    if parent == patient_folder or UNTYPED_FOLDERS.match(parent.name.strip()):
        return UNKNOWN_CELL_TYPE
    return parent.name.strip()


def read(root: Path, options: DataOptions) -> Cohort:
    table_path = options.csv or find_table(root)
    table = read_table(table_path)
    folders = {d.name: d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    id_column = _id_column(table, set(folders), options)
    label_column = _label_column(table, id_column, options)
    columns = _attribute_columns(table, {c for c in (id_column, label_column) if c}, options)
    names = [attribute_name(c) for c in columns]
    problems = table.problems + check_duplicate_ids(table, id_column)
    labels = sorted({row[label_column] for row in table.rows if label_column and not is_missing(row[label_column])})
    class_names = options.class_names or labels
    patients: list[Patient] = []
    seen: set[str] = set()
    for i, row in enumerate(table.rows):
        pid = row[id_column]
        if not pid:
            problems.append(
                Problem("missing_id", table.where(i), f"{id_column} is empty; fill it in or delete the row")
            )
            continue
        if pid in seen:
            continue
        seen.add(pid)
        label = None if label_column is None or is_missing(row[label_column]) else row[label_column]
        if label is not None and label not in class_names:
            problems.append(
                Problem(
                    "unknown_label",
                    table.where(i, pid),
                    f"{label_column} {label!r} is not one of the classes {class_names}; fix it or set class_names",
                )
            )
            continue
        attributes: dict[str, float] = {}
        for column, name in zip(columns, names):
            attributes[name], found = parse_attribute(table, i, column, options, pid)
            problems += found
            if out_of_range := implausible(name, attributes[name], table.where(i, pid), column):
                problems.append(out_of_range)
        folder = folders.get(pid)
        if folder is None:
            problems.append(
                Problem(
                    "missing_folder",
                    table.where(i, pid),
                    f"no folder {pid}/ under {root}; patient left out. Add the folder or fix the id",
                    severity="warning",
                )
            )
            continue
        images = list_images(folder, problems)
        patients.append(Patient(pid, label, attributes, images, cell_types=[cell_type(p, folder) for p in images]))
    for name, folder in sorted(folders.items()):
        if name not in seen and list_images(folder):
            problems.append(
                Problem(
                    "orphan_folder", str(folder), "folder without a row in the table; ignored. Add a row", "warning"
                )
            )
    patients, empty = drop_empty_bags(patients, root)
    for p in patients:
        for name in names:
            p.attributes.setdefault(name, math.nan)
    return Cohort(
        root=root,
        layout="patient-folders",
        patients=patients,
        class_names=list(class_names),
        attribute_names=names,
        problems=problems + empty,
        meta={
            "table": str(table_path),
            "id_column": id_column,
            "label_column": label_column,
            "attribute_columns": dict(zip(names, columns)),
        },
    )


@LAYOUTS.register("patient-folders")
class PatientFoldersLayout:
    detect_order = 30
    expects = "a patients .csv at the top"
    looks_like = staticmethod(looks_like)
    read = staticmethod(read)
