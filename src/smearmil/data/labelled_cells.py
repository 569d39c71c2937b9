"""Cells with a label of their own (a cell type), for training a supervised cell encoder: the cells of a
single-cell data set, or the cell-type folders of some patients of a cohort."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import ImageCache, build_cache
from .cohort import UNKNOWN_CELL_TYPE, CellSet, Cohort
from .features import cell_types_of
from .images import Preprocessing


@dataclass
class LabelledCells:
    """Rows of an image cache with a class index each."""

    cache: ImageCache
    rows: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: str  # what the labels are, for the encoder's record

    def __len__(self) -> int:
        return len(self.rows)


def from_cellset(
    cells: CellSet, prep: Preprocessing, cache_dir: str | Path | None = None, progress: bool = True
) -> LabelledCells:
    """Every readable cell of a single-cell data set (e.g. blood-cells-dev), labelled by its class."""
    cache = build_cache(cells.as_cohort(), prep, cache_dir, progress=progress)
    rows = np.concatenate([np.asarray(cache.rows(c)) for c in cache.patient_ids])
    labels = np.concatenate([np.full(len(cache.rows(c)), cells.class_names.index(c)) for c in cache.patient_ids])
    return LabelledCells(cache, rows, labels.astype(np.int64), list(cells.class_names), f"single cells of {cells.root}")


def from_cell_types(cohort: Cohort, cache: ImageCache, patients: Sequence[str], min_cells: int = 5) -> LabelledCells:
    """The cells of ``patients`` whose folder names their type (e.g. aml-apl-dev's ``Blast, no lineage
    spec``); types with fewer than ``min_cells`` cells, and cells of unknown type, are left out."""
    rows: list[int] = []
    types: list[str] = []
    for pid in patients:
        for row, kind in zip(cache.rows(pid), cell_types_of(cohort, cache, pid)):
            if kind != UNKNOWN_CELL_TYPE:
                rows.append(row)
                types.append(kind)
    counts = {t: types.count(t) for t in set(types)}
    names = sorted(t for t, n in counts.items() if n >= min_cells)
    if len(names) < 2:
        raise ValueError(
            f"{cohort.root}: fewer than two cell types with {min_cells} or more cells among the training patients; "
            "a supervised cell encoder needs cell-type folders, or a single-cell data set (cell_labels)"
        )
    keep = [i for i, t in enumerate(types) if t in names]
    labels = np.array([names.index(types[i]) for i in keep], dtype=np.int64)
    return LabelledCells(cache, np.array([rows[i] for i in keep]), labels, names, f"cell-type folders of {cohort.root}")
