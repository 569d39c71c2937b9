"""What a cell's contribution means to a reader: its signed share of the patient's evidence, turned toward
the class the patient is called, in words (no torch: the review page and the galleries both use it)."""

from __future__ import annotations

import numpy as np


def contribution_label(toward: str, against: str = "", image_expert: bool = False) -> str:
    """What a gallery's numbers mean, in words."""
    whose = "the image expert's evidence" if image_expert else "the evidence"
    minus = f", - toward {against}" if against else f", - away from {toward}"
    return f"each cell's share of {whose} (+ toward {toward}{minus})"


def evidence_shares(values: np.ndarray) -> np.ndarray:
    """Each cell's signed share of its patient's evidence: its contribution over the sum of every cell's
    absolute contribution (the shares' absolute values add up to 1; all zero when every cell is)."""
    values = np.asarray(values, dtype=np.float64)
    total = float(np.abs(values).sum())
    return values / total if total > 0 else np.zeros_like(values)


def share_text(share: float) -> str:
    """A share as a signed percentage: ``+12%``, ``-0.4%``."""
    pct = 100 * share
    return f"{pct:+.0f}%" if abs(pct) >= 9.95 else f"{pct:+.1f}%"


def toward_call(values: np.ndarray, toward: str, against: str, call: str) -> tuple[np.ndarray, str, str]:
    """Contributions toward ``toward`` turned toward the class the patient is called, where that is the
    other class of a binary task (``against``): every number then reads as support for the call."""
    if call and against and call == against:
        return -np.asarray(values, dtype=np.float64), against, toward
    return np.asarray(values, dtype=np.float64), toward, against
