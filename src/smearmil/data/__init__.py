"""Data layer: cohorts, readers, validation, splits, image cache and the simulator."""

from .cohort import UNKNOWN_CELL_TYPE, CellSet, Cohort, Patient
from .options import DataOptions
from .problems import DataError, Problem
from .validation import load, load_cohort

__all__ = [
    "UNKNOWN_CELL_TYPE",
    "CellSet",
    "Cohort",
    "DataError",
    "DataOptions",
    "Patient",
    "Problem",
    "load",
    "load_cohort",
]
