"""Per-patient cell embeddings on disk: ``features.npy`` (cells x D, float32) and ``index.json``.

The index holds each patient's row range, label, cell ids (paths relative to the cohort root) and cell
types, the class names and what produced the embeddings (``encoder``). The folder is written beside
its target and renamed into place, so a killed extraction leaves nothing that a later run trusts.

``write`` claims its folder as a ``features`` output (``utils.outputs``): a folder the tool did not
write is refused, never deleted; features of the same encoder and cells are reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import dumps_json
from ..utils.distributed import barrier, is_main_process, sharded
from ..utils.outputs import claim_output, run_fingerprint
from ..utils.progress import track
from .cache import ImageCache
from .cohort import UNKNOWN_CELL_TYPE, Cohort, Patient

FEATURES_FILE = "features.npy"
INDEX_FILE = "index.json"


def cell_types_of(cohort: Cohort, cache: ImageCache, patient_id: str) -> list[str]:
    """The type of each cached cell of a patient (in cache order; unknown when its folder names none)."""
    patient = cohort[patient_id]
    if patient.cell_types is None:
        return [UNKNOWN_CELL_TYPE] * len(cache.rows(patient_id))
    by_file = {}
    for path, kind in zip(patient.images, patient.cell_types):
        try:
            by_file[str(path.relative_to(cohort.root))] = kind
        except ValueError:
            by_file[str(path)] = kind
    return [by_file.get(c, UNKNOWN_CELL_TYPE) for c in cache.cell_ids(patient_id)]


class FeatureStore:
    """A finished feature folder, opened read-only (the matrix is memory-mapped)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index_path = self.directory / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(
                f"{self.directory} holds no features ({INDEX_FILE}); run `smearmil features extract`"
            )
        index = json.loads(index_path.read_text(encoding="utf-8"))
        self.features: np.ndarray = np.load(self.directory / FEATURES_FILE, mmap_mode="r", allow_pickle=False)
        self.class_names: list[str] = index["class_names"]
        self.encoder: dict[str, Any] = index["encoder"]
        self.root = index["root"]
        self._patients: dict[str, dict[str, Any]] = index["patients"]

    def identity(self) -> str:
        """A short hash of the store's index (patients, cells, labels, encoder)."""
        return hashlib.sha256((self.directory / INDEX_FILE).read_bytes()).hexdigest()[:16]

    @property
    def patient_ids(self) -> list[str]:
        return list(self._patients)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def bag(self, patient_id: str) -> np.ndarray:
        a, b = self._patients[patient_id]["rows"]
        return np.array(self.features[a:b], dtype=np.float32)

    def cell_ids(self, patient_id: str) -> list[str]:
        return self._patients[patient_id]["cells"]

    def cell_types(self, patient_id: str) -> list[str]:
        return self._patients[patient_id]["cell_types"]

    def label(self, patient_id: str) -> str | None:
        return self._patients[patient_id]["label"]

    @property
    def has_cell_types(self) -> bool:
        return any(t != UNKNOWN_CELL_TYPE for p in self._patients.values() for t in p["cell_types"])

    def cohort(self) -> Cohort:
        """The patients and labels (no images): enough to make patient-level splits. Its identity is the
        store's, so a result on other features of the same patients is never taken for this one."""
        identity = [self.identity()]
        patients = [
            Patient(pid, p["label"], cell_types=p["cell_types"], digests=identity) for pid, p in self._patients.items()
        ]
        return Cohort(Path(self.root), "features", patients, list(self.class_names), [])

    @classmethod
    def write(
        cls,
        directory: str | Path,
        cohort: Cohort,
        cache: ImageCache,
        embed: Callable[[np.ndarray], np.ndarray],
        encoder: dict[str, Any],
        progress: bool = True,
        identity: str = "",
        overwrite: bool = False,
    ) -> FeatureStore:
        """Embed every cached cell of ``cohort`` with ``embed`` and store the result in ``directory``.

        ``identity`` names the encoder's weights; with the cache it is the store's fingerprint."""
        directory = Path(directory)
        prep = {"size": cache.preprocessing.size, "crop": cache.preprocessing.crop}
        fingerprint = run_fingerprint({"encoder": identity, "preprocessing": prep}, cohort.identity())
        if (
            claim_output(directory, "features", fingerprint, overwrite) == "resume"
            and (directory / INDEX_FILE).is_file()
        ):
            return cls(directory)
        ids = [i for i in cohort.ids if i in set(cache.patient_ids)]
        # several processes (DDP): each embeds its share of the patients; the main one writes the store
        vectors = dict(sharded(lambda share: _embed_each(share, cache, embed, progress), ids, key=lambda pv: pv[0]))
        if is_main_process():
            cls._write(directory, cohort, cache, ids, vectors, encoder)
        barrier()
        return cls(directory)

    @staticmethod
    def _write(
        directory: Path,
        cohort: Cohort,
        cache: ImageCache,
        ids: list[str],
        vectors: dict[str, np.ndarray],
        encoder: dict[str, Any],
    ) -> None:
        for stale in directory.glob(".partial-*"):  # left by a killed extraction into this folder
            shutil.rmtree(stale, ignore_errors=True)
        work = directory / f".partial-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            patients, row = {}, 0
            for pid in ids:
                n = len(vectors[pid])
                patients[pid] = {
                    "rows": [row, row + n],
                    "label": cohort[pid].label,
                    "cells": cache.cell_ids(pid),
                    "cell_types": cell_types_of(cohort, cache, pid),
                }
                row += n
            matrix = np.concatenate([vectors[i] for i in ids]) if ids else np.zeros((0, 1), np.float32)
            np.save(work / FEATURES_FILE, matrix, allow_pickle=False)
            index = {
                "class_names": list(cohort.class_names),
                "root": str(cohort.root),
                "encoder": encoder,
                "dim": int(matrix.shape[1]),
                "patients": patients,
            }
            (work / INDEX_FILE).write_text(dumps_json(index), encoding="utf-8")
            os.replace(work / FEATURES_FILE, directory / FEATURES_FILE)
            os.replace(work / INDEX_FILE, directory / INDEX_FILE)  # last: its presence marks the store finished
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _embed_each(
    ids: Sequence[str], cache: ImageCache, embed: Callable[[np.ndarray], np.ndarray], progress: bool
) -> list[tuple[str, np.ndarray]]:
    return [
        (pid, np.asarray(embed(cache.bag(pid)), dtype=np.float32))
        for pid in track(ids, "embedding cells", len(ids), progress)
    ]
