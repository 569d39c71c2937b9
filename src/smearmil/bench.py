"""Benchmarks that print ratios measured in one run (``smearmil bench ...``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.cache import ImageCache, build_cache
from .data.images import Preprocessing
from .data.options import DataOptions
from .data.validation import load_cohort
from .utils.progress import track


@dataclass
class CacheBench:
    cells: int
    cache_seconds: float
    decode_seconds: float
    cache_dir: str

    @property
    def ratio(self) -> float:
        return self.decode_seconds / self.cache_seconds


def read_epoch(cache: ImageCache) -> int:
    """Copy every patient's bag out of the cache into memory, as a data loader does in one epoch."""
    n = 0
    for pid in cache.patient_ids:
        n += len(np.array(cache.bag(pid)))
    return n


def decode_epoch(cache: ImageCache, progress: bool) -> int:
    """Decode and preprocess the same cells from their source files."""
    prep, n = cache.preprocessing, 0
    for pid in track(cache.patient_ids, "decoding from source", enabled=progress):
        for rel in cache.cell_ids(pid):
            path = cache.root / rel
            prep.load(path.read_bytes(), path.name)
            n += 1
    return n


def bench_cache(
    path: str | Path,
    options: DataOptions | None = None,
    prep: Preprocessing | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> CacheBench:
    """Time one epoch read from the cache against decoding the same images, single-threaded both."""
    cohort = load_cohort(path, options, progress)
    cache = build_cache(cohort, prep, cache_dir, progress=progress)
    read_epoch(cache)  # warm the page cache: later epochs read from memory, as here
    start = time.perf_counter()
    n = read_epoch(cache)
    cache_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decode_epoch(cache, progress)
    decode_seconds = time.perf_counter() - start
    return CacheBench(n, cache_seconds, decode_seconds, str(cache.directory))


@dataclass
class FeatureBench:
    cells: int
    serial_seconds: float
    parallel_seconds: float
    n_jobs: int

    def cells_per_second(self, parallel: bool = True) -> float:
        return self.cells / (self.parallel_seconds if parallel else self.serial_seconds)

    def minutes_for(self, n_cells: int) -> float:
        return n_cells / self.cells_per_second() / 60


def bench_features(
    path: str | Path,
    options: DataOptions | None = None,
    n_cells: int = 200,
    n_jobs: int = 2,
    size: int = 224,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> FeatureBench:
    """Time the 94 hand-crafted features on a sample of cells, in one process and in ``n_jobs``."""
    from joblib import Parallel, delayed

    from .baselines.handcrafted import cell_features

    cohort = load_cohort(path, options, progress)
    cache = build_cache(cohort, Preprocessing(size), cache_dir, progress=progress)
    rows = np.linspace(0, len(cache) - 1, min(n_cells, len(cache))).astype(int)
    cells = [np.array(cache.array[r]) for r in rows]
    start = time.perf_counter()
    for cell in cells:
        cell_features(cell)
    serial = time.perf_counter() - start
    chunks = [cells[i::n_jobs] for i in range(n_jobs)]
    start = time.perf_counter()
    Parallel(n_jobs=n_jobs)(delayed(lambda batch: [cell_features(c) for c in batch])(c) for c in chunks)
    parallel = time.perf_counter() - start
    return FeatureBench(len(cells), serial, parallel, n_jobs)


@dataclass
class HeadBench:
    patients: int
    cells: int
    folds: int
    prepare_seconds: float
    cv_seconds: float
    macro_f1: float


def bench_heads(
    features: str | Path | None = None,
    patients: int = 100,
    cells: tuple[int, int] = (16, 64),
    folds: int = 5,
    pooling: str = "attention",
    epochs: int = 40,
    work: str | Path | None = None,
    progress: bool = True,
) -> HeadBench:
    """Time a ``folds``-fold CV of a MIL head on cached features (given, or of a simulated 4-class cohort
    embedded by a random cpu-ssl-shaped encoder); preparing the features is timed apart."""
    import tempfile

    from .data.features import FeatureStore
    from .data.simulate import SimulationConfig, simulate
    from .evaluation.feature_cv import run_head_cv, store_cv_stores
    from .models.cell_encoder import CellEncoder, extract_features
    from .models.encoders import EncoderConfig
    from .training.feature_mil import load_head_config

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        start = time.perf_counter()
        if features is None:
            config = SimulationConfig(patients=patients, classes=4, cells_min=cells[0], cells_max=cells[1], size=64)
            root = simulate(Path(tmp) / "cohort", config, progress=progress)
            cohort = load_cohort(root, progress=progress)
            cache = build_cache(cohort, Preprocessing(64), Path(tmp) / "cache", progress=progress)
            encoder = CellEncoder.random(EncoderConfig(k=16), Preprocessing(64))  # calibrated on the cells it embeds
            store = extract_features(encoder, cohort, cache, Path(tmp) / "features", progress)
        else:
            store = FeatureStore(features)
        prepared = time.perf_counter() - start
        start = time.perf_counter()
        summary = run_head_cv(
            store.cohort(),
            store_cv_stores(store),
            load_head_config(pooling, {"epochs": epochs}),
            Path(tmp) / "cv",
            folds,
            progress=progress,
            umap=False,
        ).summary
        seconds = time.perf_counter() - start
        return HeadBench(
            len(store.patient_ids),
            int(store.features.shape[0]),
            folds,
            prepared,
            seconds,
            float(summary["metrics"]["macro_f1"]["mean"]),
        )
