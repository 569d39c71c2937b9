"""Benchmarks that print ratios measured in one run (``smearmil bench ...``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cache import ImageCache, build_cache
from ..data.images import Preprocessing
from ..data.options import DataOptions
from ..data.validation import load_cohort
from ..utils.progress import track


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

    from ..baselines.handcrafted import cell_features

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

    from ..data.features import FeatureStore
    from ..data.simulate import SimulationConfig, simulate
    from ..models.cell_encoder import CellEncoder, extract_features
    from ..models.specs import EncoderConfig
    from ..protocols.cv import CVSettings
    from ..protocols.feature_cv import store_head_cv
    from ..training.config.head import load_head_config

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
        head = load_head_config(pooling, {"epochs": epochs})
        settings = CVSettings(folds, progress=progress)
        summary = store_head_cv(store, head, Path(tmp) / "cv", settings, umap=False).summary
        seconds = time.perf_counter() - start
        return HeadBench(
            len(store.patient_ids),
            int(store.features.shape[0]),
            folds,
            prepared,
            seconds,
            float(summary["metrics"]["macro_f1"]["mean"]),
        )


@dataclass
class MemoryBench:
    """Peak resident memory (MB) of two measurements, each in a fresh process."""

    inference_cells: int
    centring_cells: int
    size: int
    baseline_mb: float  # a process that imported torch and smearmil, before any work
    inference_mb: float  # predicting one bag of ``inference_cells`` cells with the paper's model
    centring_mb: float  # pixel statistics (mean centring, PCA colour) of ``centring_cells`` cells
    budget_mb: float

    @property
    def ratio(self) -> float:
        return self.budget_mb / max(self.inference_mb, self.centring_mb)


_MEASURE = """
import json, sys
import numpy as np
from smearmil.data.attributes import AttributeEncoder
from smearmil.data.cache import ImageCache
from smearmil.models import build_model
from smearmil.training.augment import BatchTransform, pixel_statistics
from smearmil.training.config import load_config
from smearmil.training.trained import TrainedModel
def peak_mb():  # this process's own peak RSS (VmHWM): ru_maxrss would carry the parent's across fork+exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kind, cache_dir = sys.argv[1], sys.argv[2]
cache = ImageCache(cache_dir)
start = peak_mb()
if kind == "inference":
    config = load_config("cnn-mean-k32", {"image": {"size": cache.shape[1], "crop": None}})
    model = build_model(config.model, 2, 0, cache.shape[1])
    encoder = AttributeEncoder([], [], "impute")
    encoder.medians = {"_": 0.0}
    stats = pixel_statistics(cache, cache.patient_ids[:1], max_cells=64)
    trained = TrainedModel(model, BatchTransform(stats), encoder, config, ["a", "b"])
    pid = cache.patient_ids[0]
    trained.predict_cohort(None, [pid], cache)
elif kind == "centring":
    pixel_statistics(cache, cache.patient_ids, max_cells=len(cache))
print(json.dumps({"baseline_mb": start, "peak_mb": peak_mb()}))
"""


def _measure(kind: str, cache_dir: Path) -> dict[str, float]:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, kind, str(cache_dir)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement {kind} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(
    inference_cells: int = 5000,
    centring_cells: int = 10000,
    size: int = 224,
    budget_gb: float = 2.0,
    work: str | Path | None = None,
    progress: bool = True,
) -> MemoryBench:
    """Peak RSS of predicting one ``inference_cells``-cell bag at ``size`` px with the paper's model
    (cnn-mean-k32) and of the mean-centring statistics of ``centring_cells`` cells, each measured in a
    fresh process on random cells written to a temporary cache."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        if progress:
            print(
                f"writing {inference_cells + centring_cells:,} random {size} px cells to a temporary cache",
                file=__import__("sys").stderr,
            )
        bag = ImageCache.synthetic(Path(tmp) / "bag", {"P0": inference_cells}, size)
        many = ImageCache.synthetic(Path(tmp) / "many", {f"P{i}": 100 for i in range(centring_cells // 100)}, size)
        inference = _measure("inference", bag.directory)
        centring = _measure("centring", many.directory)
    return MemoryBench(
        inference_cells,
        centring_cells,
        size,
        inference["baseline_mb"],
        inference["peak_mb"],
        centring["peak_mb"],
        budget_gb * 1024,
    )
