"""The decoded cache: same pixels as decoding, rebuilt on change, atomic, shared across processes."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from smearmil.data import load_cohort
from smearmil.data.cache import INDEX_FILE, ImageCache, build_cache
from smearmil.data.images import Preprocessing
from smearmil.data.simulate import SimulationConfig, simulate

from .conftest import write_image


def test_cache_holds_the_preprocessed_cells_of_each_patient(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    prep = Preprocessing(size=24, crop=16)
    cache = build_cache(cohort, prep, tmp_path, progress=False)
    assert len(cache) == cohort.n_cells and cache.shape[1:] == (16, 16, 3)
    for patient in cohort.patients[:3]:
        bag = cache.bag(patient.id)
        assert bag.shape == (patient.n_cells, 16, 16, 3)
        for row, path in zip(bag, patient.images):
            assert np.array_equal(row, prep.load(path.read_bytes(), path.name))
        assert cache.cell_ids(patient.id) == [str(p.relative_to(cohort.root)) for p in patient.images]
    again = build_cache(cohort, prep, tmp_path, progress=False)
    assert again.directory == cache.directory  # reused, not rebuilt
    clone = pickle.loads(pickle.dumps(cache))  # what a worker process receives
    assert clone._array is None and np.array_equal(clone.bag(cohort.ids[0]), cache.bag(cohort.ids[0]))


def test_cache_is_rebuilt_when_a_source_changes(lymph_cohort: Path, tmp_path: Path) -> None:
    prep = Preprocessing(size=16)
    first = build_cache(load_cohort(lymph_cohort, progress=False), prep, tmp_path, progress=False)
    image = lymph_cohort / "trainset" / "P1" / "P1_0.jpg"
    write_image(image, seed=999)
    os.utime(image, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    second = build_cache(load_cohort(lymph_cohort, progress=False), prep, tmp_path, progress=False)
    assert second.directory != first.directory
    assert not np.array_equal(first.bag("P1")[0], second.bag("P1")[0])
    assert np.array_equal(first.bag("P2"), second.bag("P2"))
    content = build_cache(load_cohort(lymph_cohort, progress=False), prep, tmp_path, "content", progress=False)
    assert content.directory not in (first.directory, second.directory)


def test_unreadable_file_found_at_build_is_skipped(lymph_cohort: Path, tmp_path: Path) -> None:
    from smearmil.data import DataOptions

    cohort = load_cohort(lymph_cohort, DataOptions(check_images=False), progress=False)
    cohort["P2"].images[1].write_bytes(b"garbage")
    cache = build_cache(cohort, Preprocessing(size=16), tmp_path, progress=False)
    assert cache.bag("P2").shape[0] == 2 and len(cache) == cohort.n_cells - 1
    assert cache.skipped[0].where.endswith("P2_1.jpg")


@pytest.mark.slow
def test_a_killed_build_leaves_nothing_trusted(tmp_path: Path) -> None:
    cohort_dir = simulate(
        tmp_path / "big", SimulationConfig(patients=30, cells_min=60, cells_max=60, size=96, seed=5), progress=False
    )
    cache_dir = tmp_path / "cache"
    script = (
        f"from smearmil.data import load_cohort, DataOptions\nfrom smearmil.data.cache import build_cache\n"
        f"from smearmil.data.images import Preprocessing\n"
        f"c = load_cohort({str(cohort_dir)!r}, DataOptions(check_images=False), progress=False)\n"
        f"build_cache(c, Preprocessing(size=256), {str(cache_dir)!r}, progress=False, workers=1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while not list(cache_dir.glob("*.building-*/images.u8")) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(cache_dir.glob("*.building-*")), "the build should have been killed mid-way"
    assert not [d for d in cache_dir.iterdir() if (d / INDEX_FILE).exists()]
    cohort = load_cohort(cohort_dir, progress=False)
    cache = build_cache(cohort, Preprocessing(size=256), cache_dir, progress=False)
    assert len(cache) == cohort.n_cells
    assert not list(cache_dir.glob("*.building-*")), "the dead build's folder should be cleaned up"
    assert isinstance(ImageCache(cache.directory), ImageCache)
