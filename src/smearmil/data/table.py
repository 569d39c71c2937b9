"""Reading clinical CSV tables the way exports really come (BOM, ; separators, decimal commas)."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .problems import DataError, Problem

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-", "missing"})
_GENDER = {"m": 1.0, "male": 1.0, "h": 1.0, "homme": 1.0, "f": 0.0, "female": 0.0, "femme": 0.0, "w": 0.0}


@dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]  # file line of each row (the header is line 1)
    delimiter: str
    problems: list[Problem]

    def column(self, wanted: str) -> str | None:
        """The table's spelling of a column name, matched case- and space-insensitively."""
        key = _norm(wanted)
        return next((c for c in self.columns if _norm(c) == key), None)

    def where(self, i: int, patient_id: str | None = None) -> str:
        suffix = f" (patient {patient_id})" if patient_id else ""
        return f"{self.path.name} line {self.lines[i]}{suffix}"


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def read_table(path: Path) -> Table:
    """Read a CSV/TSV with a header; raises DataError naming the file if it cannot be parsed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as error:
        raise DataError([Problem("unreadable_csv", str(path), f"cannot read the table: {error}")]) from error
    sample = text[:4096]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    text = text.replace("\x00", "")  # NUL bytes: csv refuses them, and no real value holds one
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError([Problem("empty_csv", str(path), "the table is empty; it needs a header row")]) from None
    except csv.Error as error:
        raise DataError([Problem("unreadable_csv", f"{path.name} line 1", f"not a CSV header ({error})")]) from None
    columns = [c.strip() for c in header]
    if not any(columns):
        raise DataError([Problem("empty_csv", f"{path.name} line 1", "the header row names no columns; add one")])
    twice = _repeated_columns(columns)
    if twice:
        raise DataError(
            [
                Problem(
                    "duplicate_column",
                    f"{path.name} line 1",
                    f"the header names {' and '.join(repr(c) for c in names)} (one column, matched case- and "
                    "space-insensitively); rename or delete one of them",
                )
                for names in twice
            ]
        )
    rows, lines, problems = [], [], []
    line_no = 1
    try:
        for line_no, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            problem = _row_shape(values, len(columns), f"{path.name} line {line_no}")
            if problem is not None:
                problems.append(problem)
            values = values + [""] * (len(columns) - len(values))
            rows.append({c: v.strip() for c, v in zip(columns, values)})
            lines.append(line_no)
    except csv.Error as error:
        problems.append(Problem("malformed_row", f"{path.name} line {line_no + 1}", f"cannot be parsed ({error})"))
    return Table(path, columns, rows, lines, delimiter, problems)


def _repeated_columns(columns: list[str]) -> list[list[str]]:
    """Header names that mean the same column (``LABEL`` and ``label``): each group of two or more."""
    groups: dict[str, list[str]] = {}
    for c in columns:
        if c:
            groups.setdefault(_norm(c), []).append(c)
    return [names for names in groups.values() if len(names) > 1]


def _row_shape(values: list[str], n_columns: int, where: str) -> Problem | None:
    """A row with more values than columns (an unquoted comma) or fewer (a cut or shifted row)."""
    if len(values) > n_columns and any(v.strip() for v in values[n_columns:]):
        return Problem(
            "malformed_row",
            where,
            f"has {len(values)} values for {n_columns} columns (a decimal comma or an unquoted comma?); "
            "quote the value or fix the separator",
        )
    if len(values) < n_columns:
        return Problem(
            "malformed_row",
            where,
            f"has {len(values)} values for {n_columns} columns (a cut row?); complete it (NA for an unknown value)",
        )
    return None


def is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING_TOKENS


def parse_number(text: str, delimiter: str = ",") -> float | None:
    """A float, NaN when missing, None when the text is not a number."""
    if is_missing(text):
        return math.nan
    cleaned = text.strip()
    if delimiter != ",":
        cleaned = cleaned.replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_gender(text: str) -> float | None:
    """1.0 for male, 0.0 for female (any case, English or French), NaN when missing, else None."""
    if is_missing(text):
        return math.nan
    return _GENDER.get(text.strip().lower())
