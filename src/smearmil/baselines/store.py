"""Hand-crafted features of every cached cell, computed in parallel and stored beside the image cache.

Features live in ``<image cache>/features-v<version>-<params>/`` as chunks of rows, each written
atomically when computed, so an interrupted run keeps what it finished and the next one resumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from ..data.cache import ImageCache
from ..utils.atomic import atomic_path
from ..utils.progress import Steps
from .handcrafted import FEATURE_NAMES, cell_features
from .segmentation import SegmentationConfig

# 2: the texture variables of the paper (correlation 2, inverse difference); 3: the whole lymphocyte
# (nucleus and cytoplasm), its shape unfilled, the fractal dimension averaged over thresholds
FEATURE_VERSION = 3
CHUNK = 128


def _chunk_features(cache: ImageCache, start: int, stop: int, config: SegmentationConfig) -> np.ndarray:
    return np.stack([cell_features(np.asarray(cache.array[r]), config) for r in range(start, stop)])


def feature_dir(cache: ImageCache, config: SegmentationConfig) -> Path:
    params = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]
    return cache.directory / f"features-v{FEATURE_VERSION}-{params}"


def feature_matrix(
    cache: ImageCache, config: SegmentationConfig | None = None, n_jobs: int = 2, progress: bool = True
) -> np.ndarray:
    """(n_cells, 94) features aligned with the cache's rows; only missing chunks are computed."""
    config = config or SegmentationConfig()
    folder = feature_dir(cache, config)
    folder.mkdir(exist_ok=True)
    chunks = [(start, min(start + CHUNK, len(cache))) for start in range(0, len(cache), CHUNK)]
    path = lambda start: folder / f"rows-{start:08d}.npy"  # noqa: E731
    missing = [c for c in chunks if not path(c[0]).is_file()]
    if missing:
        jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_chunk_features)(cache, a, b, config) for a, b in missing
        )
        cells = sum(b - a for a, b in missing)
        with Steps("hand-crafted features", cells, progress, unit="cells") as steps:
            for (a, b), result in zip(missing, jobs):
                with atomic_path(path(a)) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, result)
                steps.advance(b - a)
    if not chunks:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.concatenate([np.load(path(a)) for a, _ in chunks])


def bags_of_features(cache: ImageCache, features: np.ndarray, ids: list[str]) -> list[np.ndarray]:
    return [features[cache.rows(pid).start : cache.rows(pid).stop] for pid in ids]
