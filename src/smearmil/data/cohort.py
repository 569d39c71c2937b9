"""The cohort model: patients with an optional label, clinical attributes and a bag of cell images."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .problems import Problem

UNKNOWN_CELL_TYPE = "unknown"


@dataclass
class Patient:
    """One patient: id, label (a class name, or None when unlabelled), attributes and ordered cells."""

    id: str
    label: str | None
    attributes: dict[str, float] = field(default_factory=dict)  # NaN marks a missing value
    images: list[Path] = field(default_factory=list)
    cell_types: list[str] | None = None
    group: str | None = None  # e.g. the split folder of the lymphocytosis layout ("trainset")
    digests: list[str] | None = None  # content hash of each image, once the images have been checked

    @property
    def n_cells(self) -> int:
        return len(self.images)

    def keep_images(self, keep: list[bool]) -> None:
        """Drop the images whose flag is False (and their cell types)."""
        self.images = [p for p, k in zip(self.images, keep) if k]
        if self.cell_types is not None:
            self.cell_types = [t for t, k in zip(self.cell_types, keep) if k]
        if self.digests is not None:
            self.digests = [d for d, k in zip(self.digests, keep) if k]


@dataclass
class Cohort:
    """Patients of one data set, with its class names and attribute names."""

    root: Path
    layout: str
    patients: list[Patient]
    class_names: list[str]
    attribute_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {p.id: i for i, p in enumerate(self.patients)}

    def set_patients(self, patients: list[Patient]) -> None:
        """Replace the patients (e.g. after dropping some), keeping the id index right."""
        self.patients = patients
        self.__post_init__()

    def __len__(self) -> int:
        return len(self.patients)

    def __getitem__(self, patient_id: str) -> Patient:
        return self.patients[self._index[patient_id]]

    def __contains__(self, patient_id: object) -> bool:
        return patient_id in self._index

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.patients]

    @property
    def n_cells(self) -> int:
        return sum(p.n_cells for p in self.patients)

    @property
    def has_cell_types(self) -> bool:
        return any(p.cell_types is not None for p in self.patients)

    def labelled(self) -> list[Patient]:
        return [p for p in self.patients if p.label is not None]

    def label_index(self, patient: Patient) -> int:
        """Class index of a labelled patient."""
        if patient.label is None:
            raise ValueError(f"patient {patient.id} has no label")
        return self.class_names.index(patient.label)

    def labels(self, ids: list[str] | None = None) -> np.ndarray:
        """Class indices for ``ids`` (default: every patient); -1 for unlabelled ones."""
        ids = self.ids if ids is None else ids
        return np.array([-1 if self[i].label is None else self.label_index(self[i]) for i in ids], dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = {c: 0 for c in self.class_names}
        for p in self.patients:
            if p.label is not None:
                counts[p.label] += 1
        return counts

    def attribute_matrix(self, ids: list[str] | None = None, names: list[str] | None = None) -> np.ndarray:
        """Attributes as a float matrix (patients x attributes), NaN where missing."""
        ids = self.ids if ids is None else ids
        names = self.attribute_names if names is None else names
        rows = [[self[i].attributes.get(n, math.nan) for n in names] for i in ids]
        return np.array(rows, dtype=np.float64).reshape(len(ids), len(names))

    def subset(self, ids: list[str]) -> Cohort:
        """A cohort of the given patients only (same classes and attributes)."""
        return replace(self, patients=[self[i] for i in ids], problems=list(self.problems))

    def identity(self) -> str:
        """A short hash of what a result depends on: patients, labels, attributes and every cell's content
        (its hash once images are checked, else its path and size)."""
        h = hashlib.sha256(f"{self.layout}\t{self.class_names}\n".encode())
        for p in sorted(self.patients, key=lambda p: p.id):
            attributes = json.dumps(sorted(p.attributes.items()), default=str)
            h.update(f"{p.id}\t{p.label}\t{attributes}\n".encode())
            cells = p.digests if p.digests is not None else [f"{_relative(i, self.root)}:{_size(i)}" for i in p.images]
            h.update(("\n".join(cells) + "\n").encode())
        return h.hexdigest()[:16]

    def fingerprint(self) -> str:
        """A short hash of patient ids and labels: ties a splits file to the cohort it was made for."""
        h = hashlib.sha256()
        for p in sorted(self.patients, key=lambda p: p.id):
            h.update(f"{p.id}\t{p.label}\n".encode())
        return h.hexdigest()[:16]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


@dataclass
class CellSet:
    """Labelled single cells (no patients), for evaluating encoders."""

    root: Path
    images: list[Path]
    labels: list[str]
    class_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    layout: str = "single-cell"

    @property
    def n_cells(self) -> int:
        return len(self.images)

    def class_counts(self) -> dict[str, int]:
        counts = {c: 0 for c in self.class_names}
        for label in self.labels:
            counts[label] += 1
        return counts

    def as_cohort(self) -> Cohort:
        """One pseudo-patient per class (id and label: the class name), so the image cache can hold the cells."""
        patients = [
            Patient(c, c, images=[p for p, label in zip(self.images, self.labels) if label == c])
            for c in self.class_names
        ]
        return Cohort(
            self.root, self.layout, [p for p in patients if p.images], list(self.class_names), [], list(self.problems)
        )
