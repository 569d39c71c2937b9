"""The single-cell layout: ``<class>/*.jpg`` plus ``labels.csv`` (file, label), for encoder evaluation."""

from __future__ import annotations

from pathlib import Path

from ..cohort import CellSet
from ..images import is_image_file
from ..layouts import LAYOUTS
from ..options import DataOptions
from ..problems import DataError, Problem
from ..table import read_table


def looks_like(root: Path) -> bool:
    path = root / "labels.csv"
    if not path.is_file():
        return False
    header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
    return bool(header) and {"file", "label"} <= {c.strip().lower() for c in header[0].split(",")}


def read(root: Path, options: DataOptions) -> CellSet:
    table = read_table(options.csv or root / "labels.csv")
    file_col, label_col = table.column("file"), table.column("label")
    if file_col is None or label_col is None:
        raise DataError([Problem("missing_columns", str(table.path), "needs columns file and label")])
    images, labels, problems = [], [], []
    listed = set()
    for i, row in enumerate(table.rows):
        path = root / row[file_col]
        listed.add(path.resolve())
        if not path.is_file():
            problems.append(Problem("missing_file", table.where(i), f"{row[file_col]} does not exist; fix the path"))
            continue
        if options.class_names is not None and row[label_col] not in options.class_names:
            problems.append(
                Problem(
                    "unknown_label", table.where(i), f"label {row[label_col]!r} is not one of {options.class_names}"
                )
            )
            continue
        images.append(path)
        labels.append(row[label_col])
    for path in sorted(root.rglob("*")):
        if path.is_file() and is_image_file(path) and path.resolve() not in listed:
            problems.append(Problem("unlisted_image", str(path), "image not in labels.csv; ignored", "warning"))
    class_names = options.class_names or sorted(set(labels))
    return CellSet(root=root, images=images, labels=labels, class_names=class_names, problems=problems)


@LAYOUTS.register("single-cell")
class SingleCellLayout:
    detect_order = 10
    expects = "labels.csv (file, label) beside <class>/ folders"
    looks_like = staticmethod(looks_like)
    read = staticmethod(read)
