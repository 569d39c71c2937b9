"""Class balancing from training labels: loss weights per class and draw weights per bag."""

from __future__ import annotations

import numpy as np


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency (mean weight 1 over the present classes); 0 for an absent class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)


def balanced_draw_weights(labels: np.ndarray) -> np.ndarray:
    """Per-bag draw weights (not normalised) under which every present class is equally likely."""
    labels = np.asarray(labels, dtype=np.int64)
    return 1.0 / np.bincount(labels).astype(np.float64)[labels]
