"""Readers for the three layouts users have, auto-detected, and the one entry point ``load``."""

from __future__ import annotations

from pathlib import Path

from ..cohort import CellSet, Cohort
from ..options import DataOptions
from ..problems import DataError, Problem
from . import lymphocytosis, patient_folders, single_cell


def detect_layout(root: Path) -> str:
    """Name the layout of ``root``: lymphocytosis, single-cell or patient-folders."""
    if single_cell.looks_like(root):
        return "single-cell"
    if lymphocytosis.looks_like(root):
        return "lymphocytosis"
    if any(p.suffix.lower() in (".csv", ".tsv") for p in root.iterdir() if p.is_file()):
        return "patient-folders"
    raise DataError(
        [
            Problem(
                "unknown_layout",
                str(root),
                "no clinical table found (trainset/trainset_true.csv, clinical_annotation.csv, a patients .csv, "
                "or labels.csv for single cells); add it or pass --layout and --csv",
            )
        ]
    )


def read(path: str | Path, options: DataOptions | None = None) -> Cohort | CellSet:
    """Read the structure of a data set (tables and file lists) without decoding images."""
    options = options or DataOptions()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError([Problem("missing_path", str(root), "is not a folder; give the folder of the data set")])
    layout = detect_layout(root) if options.layout == "auto" else options.layout
    reader = {"lymphocytosis": lymphocytosis, "patient-folders": patient_folders, "single-cell": single_cell}[layout]
    return reader.read(root.resolve(), options)
