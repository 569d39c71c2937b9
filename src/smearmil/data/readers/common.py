"""Pieces every reader shares: attribute parsing with problems, image listing, bag clean-up."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..cohort import Patient
from ..images import is_image_file
from ..options import DataOptions
from ..problems import Problem, Severity
from ..table import Table, parse_gender, parse_number

GENDER_NAMES = frozenset({"gender", "sex"})
# values outside these are typing errors, not patients: age in years, lymphocyte count in 10^9/L
PLAUSIBLE = {"age": (0.0, 130.0), "lymph_count": (0.0, 1000.0)}


def implausible(name: str, value: float, where: str, column: str) -> Problem | None:
    """An error when an attribute with a known range lies outside it (NaN, i.e. missing, passes)."""
    low, high = PLAUSIBLE.get(name, (-math.inf, math.inf))
    if math.isnan(value) or low <= value <= high:
        return None
    return Problem("implausible_attribute", where, f"{column} is {value:g}, outside {low:g}-{high:g}; fix the value")


def parse_label(text: str, class_names: list[str]) -> int | None:
    """A label as a class index: exactly an integer (``1``; -1 = unlabelled) or a class name; else None
    (``1.0``, ``1.7``, ``inf`` or ``+1`` is a typing error to fix, not a class)."""
    text = text.strip()
    if text in class_names:
        return class_names.index(text)
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else None


def missing_value_problem(where: str, column: str, options: DataOptions) -> Problem:
    if options.missing_policy == "error":
        return Problem("missing_value", where, f"{column} is missing; fill it in, or set missing_policy: impute")
    return Problem(
        "missing_value",
        where,
        f"{column} is missing; it will be imputed with the training-split median (plus a missing indicator)",
        severity="warning",
    )


def parse_attribute(
    table: Table, i: int, column: str, options: DataOptions, patient_id: str
) -> tuple[float, list[Problem]]:
    """Parse one numeric (or gender) cell of the table; NaN plus a problem when it is unusable."""
    text = table.rows[i][column]
    where = table.where(i, patient_id)
    is_gender = column.strip().lower() in GENDER_NAMES
    value = parse_gender(text) if is_gender else parse_number(text, table.delimiter)
    if value is None:
        expected = "M or F" if is_gender else "a number"
        return math.nan, [
            Problem("non_numeric_attribute", where, f"{column} is {text!r}, expected {expected}; fix the value")
        ]
    if math.isnan(value):
        return value, [missing_value_problem(where, column, options)]
    return value, []


def readable_dirs(folder: Path, problems: list[Problem], severity: Severity = "error") -> list[Path]:
    """The folders directly in ``folder``; one that cannot be listed is a problem (``severity``)."""
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError as error:
        found = _unreadable_folder(folder, error)
        problems.append(Problem(found.kind, found.where, found.message, severity=severity))
        return []


def _unreadable_folder(folder: Path, error: OSError) -> Problem:
    return Problem(
        "unreadable_folder",
        str(folder),
        f"cannot be read ({error.strerror or error}); its cells would be missed. Fix its permissions, or move it away",
    )


def list_images(folder: Path, problems: list[Problem] | None = None) -> list[Path]:
    """Image files below ``folder`` (recursively), in a stable order; a symbolic link to a missing image
    is skipped with a warning in ``problems``, a folder that cannot be read is an error there."""
    if problems is not None:  # rglob skips what it cannot list without a word: look first
        failed: list[OSError] = []
        for _ in os.walk(folder, onerror=failed.append):
            pass
        problems += [_unreadable_folder(Path(e.filename or folder), e) for e in failed]
    found = []
    for p in sorted(folder.rglob("*")):
        if not is_image_file(p):
            continue
        try:
            str(p).encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8: no table, cache or report could name it
            if problems is not None and p.is_file():
                problems.append(
                    Problem(
                        "bad_file_name",
                        repr(os.fsencode(p))[2:-1],
                        "the file name is not valid UTF-8; skipped. Rename the file",
                        severity="warning",
                    )
                )
            continue
        if p.is_file():
            found.append(p)
        elif problems is not None and p.is_symlink() and not p.exists() and is_image_file(p):
            problems.append(
                Problem(
                    "dangling_link",
                    str(p),
                    "symbolic link to a missing file; skipped. Fix or remove the link",
                    severity="warning",
                )
            )
    return found


def drop_empty_bags(patients: list[Patient], root: Path) -> tuple[list[Patient], list[Problem]]:
    kept, problems = [], []
    for p in patients:
        if p.images:
            kept.append(p)
        else:
            problems.append(
                Problem(
                    "empty_bag",
                    f"patient {p.id}",
                    "has no image files (jpg, png, tif, bmp) in its folder; patient left out. "
                    "Add its cells or drop its row",
                    severity="warning",
                )
            )
    return kept, problems


def check_duplicate_ids(table: Table, id_column: str) -> list[Problem]:
    seen: dict[str, int] = {}
    problems = []
    for i, row in enumerate(table.rows):
        pid = row[id_column]
        if pid in seen:
            problems.append(
                Problem(
                    "duplicate_patient",
                    table.where(i, pid),
                    f"patient {pid} already appears at line {table.lines[seen[pid]]}; keep one row per patient",
                )
            )
        else:
            seen[pid] = i
    return problems
