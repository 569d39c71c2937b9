"""Decoded image cache: every cell decoded once into a memory-mapped uint8 array shared by runs.

A cache lives in ``<cache_dir>/<name>-<key>/`` where the key hashes the source files (path, size and
mtime, or their content) and the preprocessing. It is built in a temporary folder and renamed into
place only when complete, so a killed build leaves nothing that a later run trusts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..utils.atomic import dumps_json
from ..utils.locks import hold_shared
from ..utils.progress import track
from .cohort import Cohort
from .images import Preprocessing, content_hash, read_image_bytes
from .problems import Problem, warn_skipped

log = logging.getLogger(__name__)
CACHE_VERSION = 1
KeyMode = Literal["stat", "content"]
IMAGES_FILE = "images.u8"
INDEX_FILE = "index.json"


def default_cache_dir() -> Path:
    """``$SMEARMIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/smearmil``, else ``~/.cache/smearmil``."""
    if env := os.environ.get("SMEARMIL_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "smearmil"


def cache_key(cohort: Cohort, prep: Preprocessing, mode: KeyMode = "stat") -> str:
    """Hash of the patients, their files and the preprocessing. A file counts by its content when the
    cohort's images were checked (their hashes are known: a cell changed in place is never served stale)
    or ``mode`` is ``content``; else by path, size and modification time."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{prep.size}|{prep.crop}|{mode}\n".encode())
    for patient in cohort.patients:
        h.update(f"patient\t{patient.id}\n".encode())
        known = patient.digests if patient.digests is not None and len(patient.digests) == len(patient.images) else None
        for k, path in enumerate(patient.images):
            if known is not None and known[k]:
                h.update(f"{path}\t{known[k]}\n".encode())
            elif mode == "content":
                h.update(f"{path}\t{content_hash(path.read_bytes())}\n".encode())
            else:
                st = path.stat()
                h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


class BrokenCache(ValueError):
    """A cache folder whose files do not agree (e.g. a truncated images.u8)."""


class ImageCache:
    """A complete cache, opened read-only. Pickles as its folder, so each worker maps it itself."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            index = json.loads((self.directory / INDEX_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BrokenCache(f"{self.directory}: unreadable cache index ({error})") from None
        if index.get("version") != CACHE_VERSION:
            raise BrokenCache(f"{self.directory}: cache format {index.get('version')}, expected {CACHE_VERSION}")
        self.shape: tuple[int, ...] = tuple(index["shape"])
        expected = int(np.prod(self.shape)) if self.shape[0] else 0
        found = (self.directory / IMAGES_FILE).stat().st_size if (self.directory / IMAGES_FILE).is_file() else -1
        if self.shape[0] and found != expected:
            raise BrokenCache(
                f"{self.directory / IMAGES_FILE} holds {found} bytes where its index says {expected} "
                "(truncated or replaced)"
            )
        self.preprocessing = Preprocessing(**index["preprocessing"])
        self.root = Path(index["root"])
        self._ranges: dict[str, tuple[int, int]] = {k: (a, b) for k, (a, b) in index["patients"].items()}
        self._cells: list[str] = index["cells"]
        self.skipped = [Problem(**p) for p in index["skipped"]]
        self._array: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    @classmethod
    def synthetic(
        cls, directory: str | Path, bags: dict[str, int], side: int, seed: int = 0, chunk: int = 256
    ) -> ImageCache:
        """A cache of random cells (``bags``: patient -> number of cells), written chunk by chunk: for
        benchmarks and tests that need large bags without decoding images."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        n = sum(bags.values())
        rng = np.random.default_rng(seed)
        array = np.memmap(directory / IMAGES_FILE, dtype=np.uint8, mode="w+", shape=(max(1, n), side, side, 3))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            array[start:stop] = rng.integers(0, 256, (stop - start, side, side, 3), dtype=np.uint8)
        array.flush()
        del array
        ranges, cells, row = {}, [], 0
        for pid, count in bags.items():
            ranges[pid] = [row, row + count]
            cells += [f"{pid}/{k}.png" for k in range(count)]
            row += count
        index = {
            "version": CACHE_VERSION,
            "root": str(directory),
            "preprocessing": {"size": side, "crop": None},
            "shape": [n, side, side, 3],
            "patients": ranges,
            "cells": cells,
            "skipped": [],
        }
        (directory / INDEX_FILE).write_text(dumps_json(index), encoding="utf-8")
        return cls(directory)

    @property
    def array(self) -> np.ndarray:
        """All cells, (N, H, W, 3) uint8, memory-mapped on first use."""
        if self._array is None:
            n = self.shape[0]
            self._array = (
                np.memmap(self.directory / IMAGES_FILE, dtype=np.uint8, mode="r", shape=self.shape)
                if n
                else np.zeros(self.shape, dtype=np.uint8)
            )
        return self._array

    @property
    def patient_ids(self) -> list[str]:
        return list(self._ranges)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, patient_id: str) -> range:
        a, b = self._ranges[patient_id]
        return range(a, b)

    def bag(self, patient_id: str) -> np.ndarray:
        """The cells of one patient, (n, H, W, 3) uint8 (a view of the map: copy before writing)."""
        a, b = self._ranges[patient_id]
        return self.array[a:b]

    def read(self, rows: Sequence[int] | np.ndarray | range) -> np.ndarray:
        """A copy of the given cells read with plain file reads: unlike slicing ``array``, this maps no
        pages, so streaming over many cells keeps resident memory to one chunk."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, *self.shape[1:]), dtype=np.uint8)
        if not rows.size:
            return out
        cell = int(np.prod(self.shape[1:]))
        flat = out.reshape(rows.size, cell)
        with open(self.directory / IMAGES_FILE, "rb", buffering=0) as f:
            start = 0
            while start < rows.size:  # runs of consecutive rows in one read each
                stop = start + 1
                while stop < rows.size and rows[stop] == rows[stop - 1] + 1:
                    stop += 1
                f.seek(int(rows[start]) * cell)
                f.readinto(flat[start:stop].data)
                start = stop
        return out

    def read_bag(self, patient_id: str) -> np.ndarray:
        """A copy of one patient's cells (see ``read``)."""
        return self.read(self.rows(patient_id))

    def cell_ids(self, patient_id: str) -> list[str]:
        """The cells of one patient as paths relative to the cohort root, in cache order."""
        a, b = self._ranges[patient_id]
        return self._cells[a:b]


def _decode_one(args: tuple[Path, Preprocessing]) -> np.ndarray | str:
    path, prep = args
    try:
        return prep.load(read_image_bytes(path), path.name)
    except OSError as error:
        return str(error)


def _clean_stale_builds(cache_dir: Path) -> None:
    """Delete the unfinished builds of processes that died (of any cache in ``cache_dir``)."""
    for stale in cache_dir.glob("*.building-*"):
        pid = build_owner(stale)
        if pid is not None and not alive(pid):
            shutil.rmtree(stale, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a cache build of it is in progress)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def build_cache(
    cohort: Cohort,
    prep: Preprocessing | None = None,
    cache_dir: str | Path | None = None,
    key_mode: KeyMode = "stat",
    progress: bool = True,
    workers: int = 2,
) -> ImageCache:
    """Open the cache of ``cohort`` for ``prep``, building it first if it does not exist yet."""
    prep = prep or Preprocessing()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    crop = f"-c{prep.crop}" if prep.crop else ""
    name = f"{cohort.root.name or 'cohort'}-{prep.size}px{crop}-{cache_key(cohort, prep, key_mode)}"
    final = cache_dir / name
    if (final / INDEX_FILE).is_file() and _held(final) and (final / INDEX_FILE).is_file():
        try:  # held before it is read: `cache clear` cannot delete it under this run
            return ImageCache(final)
        except BrokenCache as broken:  # the cache is ours: rebuild it
            log.warning("%s; rebuilding it", broken)
            shutil.rmtree(final, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_builds(cache_dir)
    work = cache_dir / f"{name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        _write(cohort, prep, work, progress, workers)
        try:
            os.rename(work, final)
        except OSError:
            if not (final / INDEX_FILE).is_file():  # another process finished first: use theirs
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _held(final)
    return ImageCache(final)


def _held(folder: Path) -> bool:
    """Mark a cache as read by this process (``cache clear`` skips it until the command ends); False when
    it was cleared just now (it is then built again)."""
    try:
        hold_shared(folder)
    except FileNotFoundError:
        return False
    return True


BUILD_FOLDER = re.compile(r"^(?P<name>.+-\d+px(?:-c\d+)?-[0-9a-f]{24})\.building-(?P<pid>\d+)-[0-9a-f]{8}$")


def build_owner(folder: Path) -> int | None:
    """The process id of an unfinished cache build folder smearmil made (``<cache>.building-<pid>-<tag>``),
    or None for any other folder."""
    found = BUILD_FOLDER.match(folder.name)
    return int(found["pid"]) if found else None


def _write(cohort: Cohort, prep: Preprocessing, work: Path, progress: bool, workers: int) -> None:
    side = prep.output_size
    jobs: Sequence[tuple[Path, Preprocessing]] = [(p, prep) for patient in cohort.patients for p in patient.images]
    owners = [patient.id for patient in cohort.patients for _ in patient.images]
    cell_bytes = side * side * 3
    images_path = work / IMAGES_FILE
    with open(images_path, "wb") as f:
        f.truncate(max(1, len(jobs)) * cell_bytes)
    array = np.memmap(images_path, dtype=np.uint8, mode="r+", shape=(max(1, len(jobs)), side, side, 3))
    cells: list[str] = []
    ranges: dict[str, list[int]] = {}
    skipped: list[dict[str, str]] = []
    row = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_decode_one, jobs)
        # track first: zip asks it once more after the last image, so it ends and says so
        for result, (path, _), owner in zip(track(results, "caching images", len(jobs), progress), jobs, owners):
            start_stop = ranges.setdefault(owner, [row, row])
            if isinstance(result, str):
                skipped.append(
                    {
                        "kind": "unreadable_image",
                        "where": str(path),
                        "message": f"patient {owner}: cannot be decoded ({result}); skipped. "
                        "Re-export or delete the file",
                        "severity": "warning",
                    }
                )
                continue
            array[row] = result
            cells.append(_relative(path, cohort.root))
            row += 1
            start_stop[1] = row
    warn_skipped(Problem(**p) for p in skipped)  # type: ignore[arg-type]
    array.flush()
    del array
    with open(images_path, "r+b") as f:
        f.truncate(row * cell_bytes)
        os.fsync(f.fileno())
    index = {
        "version": CACHE_VERSION,
        "root": str(cohort.root),
        "preprocessing": {"size": prep.size, "crop": prep.crop},
        "shape": [row, side, side, 3],
        "patients": {k: v for k, v in ranges.items() if v[1] > v[0]},
        "cells": cells,
        "skipped": skipped,
    }
    with open(work / INDEX_FILE, "w", encoding="utf-8") as f:
        f.write(dumps_json(index))
        f.flush()
        os.fsync(f.fileno())
