"""Headless matplotlib (Agg) and atomic PNG writing, shared by every layer that draws."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
# labels come from users' data (class names, patient ids): a "$" must not start TeX-like mathtext
matplotlib.rcParams["text.parse_math"] = False
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure", "subplots"]


def subplots(*args: Any, **kwargs: Any) -> Any:
    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
