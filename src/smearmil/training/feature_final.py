"""A final model of the cached-feature pipeline: a cell encoder plus a MIL head trained on every labelled
patient, saved together (``encoder/`` + ``head.pt`` + ``head.json``) so new patients are predicted
through the encoder from their images."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.cache import ImageCache
from ..data.cohort import Cohort
from ..data.options import DataOptions
from ..models.cell_encoder import CellEncoder, ChannelNormalise
from ..models.feature_mil import FeatureMIL
from ..utils.atomic import atomic_path, write_json
from ..utils.checkpoints import load_state, load_tensors
from .feature_mil import HeadConfig, fit_head

HEAD_META = "head.json"
HEAD_WEIGHTS = "head.pt"
ENCODER_DIR = "encoder"


@dataclass
class FeatureModel:
    """Encoder + head: uint8 cells of a patient -> class probabilities and per-cell contributions."""

    encoder: CellEncoder
    head: FeatureMIL
    config: HeadConfig
    class_names: list[str]
    data: DataOptions = field(default_factory=DataOptions)  # how the training cohort was read
    threshold: float = 0.5
    source: str = ""

    def embed(self, cache: ImageCache, patient_id: str) -> np.ndarray:
        return self.encoder.embed(cache.read_bag(patient_id))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.encoder.save(directory / ENCODER_DIR)
        with atomic_path(directory / HEAD_WEIGHTS) as tmp:
            torch.save(self.head.state_dict(), tmp)
        write_json(
            directory / HEAD_META,
            {
                "format": 1,
                "head": self.config.model_dump(mode="json"),
                "class_names": self.class_names,
                "in_dim": self.encoder.dim,
                "data": self.data.model_dump(mode="json"),
                "threshold": self.threshold,
            },
        )

    @staticmethod
    def is_saved_in(directory: str | Path) -> bool:
        return (Path(directory) / HEAD_META).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> FeatureModel:
        """Load a saved encoder and head (weights read with ``weights_only=True``)."""
        directory = Path(directory)
        try:
            meta: dict[str, Any] = json.loads((directory / HEAD_META).read_text(encoding="utf-8"))
            config = HeadConfig.model_validate(meta["head"])
            names = list(meta["class_names"])
            data = DataOptions.model_validate(meta.get("data") or {})
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{directory / HEAD_META} is not a head smearmil wrote ({error}); train again") from None
        head = FeatureMIL(int(meta["in_dim"]), len(names), config.pooling, config.embed_dim, config.dropout)
        load_state(head, load_tensors(directory / HEAD_WEIGHTS, "head checkpoint"), directory / HEAD_WEIGHTS)
        encoder = CellEncoder.load(directory / ENCODER_DIR)
        return cls(encoder, head.eval(), config, names, data, float(meta.get("threshold", 0.5)), str(directory))


def train_feature_model(
    encoder: CellEncoder,
    cache: ImageCache,
    ids: list[str],
    labels: np.ndarray,
    class_names: list[str],
    config: HeadConfig,
    seed: int = 0,
    data: DataOptions | None = None,
) -> FeatureModel:
    """Embed the patients ``ids`` (class indices ``labels``) with ``encoder`` (a random one is standardised
    with their cells first) and fit ``config``'s head on all of them."""
    encoder = encoder.calibrated(cache, ids)
    bags = [encoder.embed(cache.read_bag(i)) for i in ids]
    head = fit_head(bags, labels, len(class_names), config, seed)
    return FeatureModel(encoder, head, config, class_names, data or DataOptions())


def train_features_run(
    cohort: Cohort,
    encoder: CellEncoder,
    config: HeadConfig,
    out: str | Path,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    data: DataOptions | None = None,
) -> dict[str, Any]:
    """Train the final encoder + head on every labelled patient of ``cohort`` and save it in ``out``."""
    import time

    from ..data.cache import build_cache
    from ..data.splits import all_labelled
    from ..utils.outputs import claim_output, run_fingerprint
    from .run_dir import RunDir

    start = time.perf_counter()
    if not isinstance(encoder.prepare, ChannelNormalise):
        raise ValueError(
            "features train saves its encoder beside the head: give a pre-training folder (`smearmil ssl "
            "pretrain`) or random:PRESET; a trained model's image encoder is predicted with that model itself"
        )
    labelled = cohort.labelled()
    if len({p.label for p in labelled}) < 2:
        raise ValueError(f"{cohort.root}: a final model needs labelled patients of at least two classes")
    fingerprint = run_fingerprint(
        {"head": config.model_dump(mode="json"), "seed": seed, "encoder": encoder.meta}, cohort.identity()
    )
    claim_output(out, "features-train", fingerprint, overwrite)
    cache = build_cache(cohort, encoder.preprocessing, cache_dir, progress=progress)
    ids = [p.id for p in labelled]
    labels = np.array([cohort.class_names.index(str(p.label)) for p in labelled])
    model = train_feature_model(encoder, cache, ids, labels, cohort.class_names, config, seed, data)
    model.save(out)
    all_labelled(cohort, val=0.0).save(RunDir(out).splits)  # the patients it trained on: never "a test" later
    RunDir(out).write_info(cohort.root, cohort.layout, "features train", fingerprint)
    return {
        "patients": len(ids),
        "cells": sum(len(cache.rows(i)) for i in ids),
        "encoder": str(encoder.meta.get("method", "?")),
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
