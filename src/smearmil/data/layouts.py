"""The registry of data layouts: each knows whether a folder looks like it and how to read it.

Auto-detection tries the layouts in order of ``detect_order`` (lowest first); a layout with
``detect_order = None`` is used only when named (``--layout``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..utils.registry import Registry

if TYPE_CHECKING:
    from .cohort import CellSet, Cohort
    from .options import DataOptions


class Layout(Protocol):
    """``detect_order``, ``looks_like(root)``, ``read(root, options)``; optionally ``expects``, a short
    text of the files it looks for (used when no layout recognises a folder)."""

    @property
    def detect_order(self) -> int | None: ...

    def looks_like(self, root: Path) -> bool: ...

    def read(self, root: Path, options: DataOptions) -> Cohort | CellSet: ...


LAYOUTS: Registry[Layout] = Registry("layout")
