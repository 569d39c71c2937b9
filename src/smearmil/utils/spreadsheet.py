"""Exported CSV cells that a spreadsheet would run as a formula are neutralised (the OWASP rule).

A cell holding users' text (a patient id, a class name, a file path) that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading apostrophe, so Excel, LibreOffice and Google Sheets show
it as text instead of evaluating it; a plain number such as ``-0.25`` is left as it is. smearmil's own
readers undo it (``read_cell``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe_cell(value: Any) -> Any:
    """``value``, with an apostrophe in front when it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith((*FORMULA_START, "'")) and not _number(value):
        return "'" + value  # a leading apostrophe of the user's own is kept by doubling it
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]


def read_cell(text: str) -> str:
    """A cell as smearmil wrote it, without the apostrophe ``safe_cell`` added."""
    if text.startswith("'") and text[1:].startswith((*FORMULA_START, "'")) and not _number(text[1:]):
        return text[1:]
    return text


class SafeWriter:
    """``csv.writer`` whose every cell goes through ``safe_cell``."""

    def __init__(self, handle: Any):
        self._writer = csv.writer(handle, lineterminator="\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A ``csv.DictWriter`` row with every cell through ``safe_cell``."""
    return {key: safe_cell(value) for key, value in row.items()}


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """Rows (the header first) as CSV text, every cell through ``safe_cell``."""
    buffer = io.StringIO()
    SafeWriter(buffer).writerows(rows)
    return buffer.getvalue()


def read_rows(handle: Any) -> Iterable[dict[str, str]]:
    """``csv.DictReader`` over a CSV smearmil wrote, every cell through ``read_cell``."""
    for row in csv.DictReader(handle):
        yield {key: read_cell(value) if isinstance(value, str) else value for key, value in row.items()}
