"""The validation report of ``smearmil data inspect``: counts, distributions and every problem."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .cohort import CellSet, Cohort
from .options import DataOptions
from .problems import DataError, Problem, errors_in
from .validation import load


@dataclass
class InspectReport:
    layout: str
    root: str
    patients: int
    cells: int
    classes: dict[str, int]
    attributes: list[dict[str, Any]]
    bag_sizes: dict[str, float]
    cell_types: dict[str, int]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not errors_in(self.problems)

    def to_json(self) -> dict[str, Any]:
        """The public JSON object of ``smearmil data inspect --json``."""
        return {
            "layout": self.layout,
            "patients": self.patients,
            "cells": self.cells,
            "classes": dict(self.classes),
            "attributes": self.attributes,
            "problems": [p.to_json() for p in self.problems],
        }

    def render(self) -> Group:
        """Rich tables for the terminal."""
        head = Table(title=f"{self.root} ({self.layout} layout)", show_header=False)
        head.add_row("patients", str(self.patients))
        head.add_row("cells", str(self.cells))
        for name, count in self.classes.items():
            head.add_row(f"class {name}", str(count))
        if self.bag_sizes:
            b = self.bag_sizes
            head.add_row("cells per patient", f"min {b['min']:.0f} · median {b['median']:.0f} · max {b['max']:.0f}")
        parts: list[Any] = [head]
        if self.attributes:
            attrs = Table(title="clinical attributes")
            for col in ("name", "min", "median", "max", "missing"):
                attrs.add_column(col, justify="left" if col == "name" else "right")
            for a in self.attributes:
                attrs.add_row(a["name"], *(_fmt(a[k]) for k in ("min", "median", "max")), str(a["missing"]))
            parts.append(attrs)
        if self.cell_types:
            types = Table(title="cell types")
            types.add_column("type")
            types.add_column("cells", justify="right")
            for name, count in sorted(self.cell_types.items(), key=lambda kv: -kv[1]):
                types.add_row(name, str(count))
            parts.append(types)
        problems = Table(title=f"problems ({len(errors_in(self.problems))} errors, {len(self.problems)} in all)")
        for col in ("severity", "kind", "where", "message"):
            problems.add_column(col, overflow="fold")
        for p in sorted(self.problems, key=lambda p: p.severity != "error"):
            style = "red" if p.severity == "error" else "yellow"
            problems.add_row(Text(p.severity, style=style), p.kind, p.where, p.message)
        if not self.problems:
            problems.add_row(Text("none", style="green"), "", "", "")
        parts.append(problems)
        return Group(*parts)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _stat(values: np.ndarray, fn: Any) -> float | None:
    return None if values.size == 0 else float(fn(values))


def summarise(data: Cohort | CellSet) -> InspectReport:
    """Build the report of a loaded (and checked) data set."""
    if isinstance(data, CellSet):
        return InspectReport(
            data.layout, str(data.root), 0, data.n_cells, data.class_counts(), [], {}, {}, data.problems
        )
    sizes = np.array([p.n_cells for p in data.patients])
    bag_sizes = (
        {}
        if sizes.size == 0
        else {
            "min": float(sizes.min()),
            "median": float(np.median(sizes)),
            "max": float(sizes.max()),
            "mean": float(sizes.mean()),
        }
    )
    attributes = []
    for name in data.attribute_names:
        column = data.attribute_matrix(names=[name])[:, 0]
        present = column[~np.isnan(column)]
        attributes.append(
            {
                "name": name,
                "min": _stat(present, np.min),
                "median": _stat(present, np.median),
                "max": _stat(present, np.max),
                "missing": int(np.isnan(column).sum()),
            }
        )
    classes = data.class_counts()
    unlabelled = sum(p.label is None for p in data.patients)
    if unlabelled:
        classes = {**classes, "unlabelled": unlabelled}
    types = Counter(t for p in data.patients for t in (p.cell_types or []))
    return InspectReport(
        data.layout,
        str(data.root),
        len(data.patients),
        data.n_cells,
        classes,
        attributes,
        bag_sizes,
        dict(types),
        data.problems,
    )


def inspect_data(path: str | Path, options: DataOptions | None = None, progress: bool = True) -> InspectReport:
    """Load and check a data set; a structural failure becomes a report with its problems, never an exception."""
    options = options or DataOptions()
    try:
        return summarise(load(path, options, progress))
    except DataError as error:
        return InspectReport(options.layout, str(path), 0, 0, {}, [], {}, {}, error.problems)
