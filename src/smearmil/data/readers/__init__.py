"""Readers for the layouts users have, auto-detected, and the one entry point ``read``.

Each reader module registers its layout in ``LAYOUTS`` and is found on start; a new layout is one
more module here.
"""

from __future__ import annotations

from pathlib import Path

from ...utils.registry import import_modules
from ..cohort import CellSet, Cohort
from ..layouts import LAYOUTS
from ..options import DataOptions
from ..problems import DataError, Problem

import_modules(__name__, __path__)


def detect_layout(root: Path) -> str:
    """Name the registered layout that ``root`` looks like (in each layout's ``detect_order``)."""
    candidates = sorted(
        (layout.detect_order, name) for name, layout in LAYOUTS.items() if layout.detect_order is not None
    )
    for _, name in candidates:
        if LAYOUTS.get(name).looks_like(root):
            return name
    wanted = "; ".join(f"{name}: {getattr(LAYOUTS.get(name), 'expects', 'its own files')}" for _, name in candidates)
    message = f"no clinical table found for any layout ({wanted}); add it or pass --layout and --csv"
    raise DataError([Problem("unknown_layout", str(root), message)])


def read(path: str | Path, options: DataOptions | None = None) -> Cohort | CellSet:
    """Read the structure of a data set (tables and file lists) without decoding images."""
    options = options or DataOptions()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError([Problem("missing_path", str(root), "is not a folder; give the folder of the data set")])
    layout = detect_layout(root) if options.layout == "auto" else options.layout
    return LAYOUTS.get(layout).read(root.resolve(), options)
