"""Where per-cell features come from: one registry of sources, serving experts configs, ``ssl cv`` and
``features``.

A source is fitted on one fold's training patients (or on nothing: hand-crafted features, a given
encoder) and gives a :class:`Featurizer`, which turns the cells of any cohort into per-cell features and
saves itself beside a predictor, so that a deployed model reads new patients' cells the same way.
Registered sources: ``handcrafted`` (the 94 features of the paper's Section 3.2), ``encoder`` (a
pre-trained encoder folder, as it is), ``random`` (a random encoder standardised on the training cells),
``ssl`` (pre-trained on the training patients' cells), ``supervised`` (the image expert of a run config
trained on their labels), ``single-cell`` (trained to tell cell types apart) and ``features`` (a folder of
``smearmil features extract``, read as it is).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cache import build_cache
from ..data.cohort import CellSet, Cohort
from ..data.images import Preprocessing
from ..data.splits import Fold
from ..models.cell_encoder import CellEncoder, ChannelNormalise, extract_features
from ..utils.atomic import write_json
from .config import RunConfig
from .config.components import CELL_SOURCES
from .config.ssl import SSLConfig

CELLS_DIR = "cells"  # a predictor's featurizer: cells.json (+ the encoder it embeds with)
CELLS_META = "cells.json"
ENCODER_DIR = "encoder"


@dataclass
class SourceContext:
    """What a source may learn from: the fold's training (and validation) patients of ``cohort``.

    ``folder`` is the fit's own folder, ``shared`` one that every fold of a CV shares (for an encoder that
    learns from no patient of the cohort)."""

    cohort: Cohort
    fold: Fold
    folder: Path
    shared: Path
    ssl: SSLConfig | None = None  # ssl, random, single-cell: the pre-training config (encoder, image, epochs)
    supervised: RunConfig | None = None  # supervised: the run config whose image expert is the encoder
    encoder: Path | None = None  # encoder: a pre-trained encoder folder
    features: Path | None = None  # features: a `smearmil features extract` folder
    extra_data: Sequence[Path] = ()  # ssl: further data sets whose cells it learns from
    test_cells: bool = False  # ssl: also the test patients' cells (transductive)
    size: int = 224  # handcrafted: side the cells are resized to
    crop: int | None = None  # handcrafted: central crop after resizing
    n_jobs: int = 2  # handcrafted: processes computing features
    cache_dir: str | Path | None = None
    progress: bool = True

    @property
    def seen(self) -> list[str]:
        return [*self.fold.train, *self.fold.val]


class Featurizer:
    """Cells of any cohort -> per-cell features (``bags``), saved and loaded beside a predictor."""

    preprocessing: Preprocessing
    learnt_from: str
    reads_images: bool = True  # False: features computed beforehand (no cell to show or explain)

    def bags(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        store: Path | None = None,
    ) -> dict[str, np.ndarray]:
        """``{patient: (n_cells, d) float32}`` in cache order; ``store``: a folder to keep them for reuse."""
        raise NotImplementedError  # pragma: no cover - abstract

    def save(self, folder: Path) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    @staticmethod
    def load(folder: Path) -> Featurizer:
        """The featurizer saved in ``folder`` (``cells.json``)."""
        meta = json.loads((folder / CELLS_META).read_text(encoding="utf-8"))
        if meta.get("kind") == "handcrafted":
            from ..baselines.store import FEATURE_VERSION

            version = int(meta.get("version", 2))  # version 2 and earlier did not say
            if version != FEATURE_VERSION:
                raise ValueError(
                    f"{folder / CELLS_META}: this model was fitted on hand-crafted features of version {version}, "
                    f"but this smearmil computes version {FEATURE_VERSION}; "
                    "train it again"
                )
            return Handcrafted(meta["size"], meta.get("crop"), int(meta.get("n_jobs", 2)))
        if meta.get("kind") == "features":
            return Stored(Path(meta["store"]), str(meta.get("learnt_from", "")))
        from .trained import load_encoder

        return Embedding(load_encoder(folder / str(meta["encoder"])), str(meta.get("learnt_from", "")))


@dataclass
class Handcrafted(Featurizer):
    """The 94 hand-crafted features of every cell (computed once per cache, kept beside it)."""

    size: int = 224
    crop: int | None = None
    n_jobs: int = 2
    learnt_from: str = "nothing (fixed hand-crafted features)"

    @property
    def preprocessing(self) -> Preprocessing:  # type: ignore[override]
        return Preprocessing(self.size, self.crop)

    def bags(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        store: Path | None = None,
    ) -> dict[str, np.ndarray]:
        from ..baselines.segmentation import SegmentationConfig
        from ..baselines.store import feature_matrix

        cache = build_cache(cohort, self.preprocessing, cache_dir, progress=progress)
        matrix = np.nan_to_num(feature_matrix(cache, SegmentationConfig(), self.n_jobs, progress)).astype(np.float32)
        return {pid: matrix[cache.rows(pid).start : cache.rows(pid).stop] for pid in ids}

    def save(self, folder: Path) -> None:
        from ..baselines.store import FEATURE_VERSION

        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "handcrafted", "version": FEATURE_VERSION, "size": self.size, "crop": self.crop}
        write_json(folder / CELLS_META, {**meta, "n_jobs": self.n_jobs})


@dataclass
class Embedding(Featurizer):
    """A frozen cell encoder's embeddings."""

    encoder: CellEncoder
    learnt_from: str = ""
    home: Path | None = field(default=None, repr=False)  # the folder the encoder is saved in, if any
    shared: bool = False  # learnt from no patient of the cohort: the same for every fold of a CV

    @property
    def preprocessing(self) -> Preprocessing:  # type: ignore[override]
        return self.encoder.preprocessing

    def bags(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        store: Path | None = None,
    ) -> dict[str, np.ndarray]:
        cache = build_cache(cohort, self.preprocessing, cache_dir, progress=progress)
        if store is not None:
            features = extract_features(self.encoder, cohort, cache, store, progress)
            return {pid: features.bag(pid) for pid in ids}
        encoder = self.encoder.calibrated(cache)
        return {pid: np.asarray(encoder.embed(cache.read_bag(pid)), np.float32) for pid in ids}

    def save(self, folder: Path) -> None:
        """``cells.json`` naming the encoder's folder: where it already lies inside ``folder.parent`` (a
        model trained for this fit), else a copy in ``folder/encoder``."""
        folder.mkdir(parents=True, exist_ok=True)
        owner = folder.parent.resolve()
        if self.home is not None and self.home.resolve().is_relative_to(owner):
            where = str(Path("..") / self.home.resolve().relative_to(owner))
        else:
            if not isinstance(self.encoder.prepare, ChannelNormalise):
                raise ValueError("this encoder is saved with the model it belongs to; give its folder")
            self.encoder.save(folder / ENCODER_DIR)
            where = ENCODER_DIR
        write_json(folder / CELLS_META, {"kind": "encoder", "encoder": where, "learnt_from": self.learnt_from})


@dataclass
class Stored(Featurizer):
    """Features extracted beforehand (``smearmil features extract``): read from their folder, for its
    patients only."""

    directory: Path
    learnt_from: str = ""
    reads_images: bool = False

    @property
    def preprocessing(self) -> Preprocessing:  # type: ignore[override]
        raise ValueError(f"the features of {self.directory} were extracted beforehand: no image is read")

    def bags(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        store: Path | None = None,
    ) -> dict[str, np.ndarray]:
        from ..data.features import FeatureStore

        features = FeatureStore(self.directory)
        known = set(features.patient_ids)
        missing = [pid for pid in ids if pid not in known]
        if missing:
            raise ValueError(
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: not in the features {self.directory}, "
                "which were extracted beforehand; to predict new patients from their images, train with "
                "`smearmil features train DATA --encoder ENCODER`"
            )
        return {pid: features.bag(pid) for pid in ids}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": "features", "store": str(self.directory.resolve()), "learnt_from": self.learnt_from}
        write_json(folder / CELLS_META, meta)


Source = Callable[[SourceContext], Featurizer]


@CELL_SOURCES.register("handcrafted")
def handcrafted(ctx: SourceContext) -> Featurizer:
    return Handcrafted(ctx.size, ctx.crop, ctx.n_jobs)


@CELL_SOURCES.register("encoder")
def given_encoder(ctx: SourceContext) -> Featurizer:
    from .trained import load_encoder

    if ctx.encoder is None:
        raise ValueError("cells.source encoder needs cells.encoder (a pre-trained encoder folder)")
    encoder = load_encoder(ctx.encoder)
    if not isinstance(encoder.prepare, ChannelNormalise):
        raise ValueError(
            f"cells.encoder {ctx.encoder} is a trained model's image expert, which is not saved on its own: "
            "use cells.source supervised (trained per fold), or a `smearmil ssl pretrain` folder"
        )
    return Embedding(encoder, f"whatever {ctx.encoder} was pre-trained on", shared=True)


@CELL_SOURCES.register("pretrained")
def shipped_encoder(ctx: SourceContext) -> Featurizer:
    """The encoder that ships with smearmil (or ``cells.encoder``, a shipped name or folder)."""
    from ..models.shipped import DEFAULT_ENCODER

    return given_encoder(replace(ctx, encoder=ctx.encoder or Path(DEFAULT_ENCODER)))


@CELL_SOURCES.register("random")
def random_encoder(ctx: SourceContext) -> Featurizer:
    ssl = _needs(ctx.ssl, "random")
    cache = build_cache(ctx.cohort, ssl.image.preprocessing, ctx.cache_dir, progress=ctx.progress)
    encoder = CellEncoder.random(ssl.encoder, cache.preprocessing, ssl.seed).calibrated(cache, ctx.seen)
    return Embedding(encoder, "nothing (random weights, standardised on the fold's training cells)")


@CELL_SOURCES.register("ssl")
def ssl_encoder(ctx: SourceContext) -> Featurizer:
    from ..data.validation import load_cohort
    from .ssl.pretrain import CellSource, pretrain

    ssl = _needs(ctx.ssl, "ssl")
    prep = ssl.image.preprocessing
    seen = [*ctx.seen, *(ctx.fold.test if ctx.test_cells else ())]
    cache = build_cache(ctx.cohort, prep, ctx.cache_dir, progress=ctx.progress)
    sources = [CellSource(cache, seen, str(ctx.cohort.root), ctx.cohort.identity())]
    for extra in ctx.extra_data:
        other = load_cohort(extra, progress=ctx.progress)
        if other.root.resolve() == ctx.cohort.root.resolve():
            raise ValueError(f"cells.extra_data {extra} is the cohort under study; name other patients' cells")
        sources.append(CellSource(build_cache(other, prep, ctx.cache_dir, progress=ctx.progress), None, str(extra)))
    home = ctx.folder / f"ssl-{ssl.method.name}"
    encoder = pretrain(sources, ssl, home, ctx.progress)
    return Embedding(encoder, ssl_learnt_from(ctx.test_cells, ctx.extra_data), home)


def ssl_learnt_from(test_cells: bool, extra_data: Sequence[Path]) -> str:
    """Which cells a fold's SSL encoder learnt from, in words."""
    return (
        "the fold's training patients"
        + (" and its test patients' cells (test_cells)" if test_cells else "")
        + "".join(f" + all of {p}" for p in extra_data)
    )


@CELL_SOURCES.register("supervised")
def supervised_encoder(ctx: SourceContext) -> Featurizer:
    from .fit import train_fold

    run = _needs(ctx.supervised, "supervised")
    cache = build_cache(ctx.cohort, run.image.preprocessing, ctx.cache_dir, progress=ctx.progress)
    home = ctx.folder / "supervised"
    fold = Fold(ctx.fold.name, ctx.fold.train, ctx.fold.val, ())
    trained = train_fold(ctx.cohort, fold, run, home, cache, ctx.progress)
    return Embedding(trained.cell_encoder(), "the fold's training patients (their labels)", home)


@CELL_SOURCES.register("single-cell")
def single_cell(ctx: SourceContext) -> Featurizer:
    """Trained once on a labelled single-cell data set (``ssl.cell_labels``: none of the cohort's patients,
    shared by every fold), or per fold on the training patients' cell-type folders."""
    ssl = _needs(ctx.ssl, "single-cell")
    check_cell_types(ctx.cohort, ssl)
    shared = bool(ssl.cell_labels)
    home = (ctx.shared if shared else ctx.folder) / "single-cell"
    if CellEncoder.is_saved_in(home):
        encoder = CellEncoder.load(home)
    else:
        cache = build_cache(ctx.cohort, ssl.image.preprocessing, ctx.cache_dir, progress=ctx.progress)
        encoder = single_cell_encoder(ctx.cohort, cache, [] if shared else ctx.seen, ssl, ctx.progress)
        encoder.save(home)
    where = ssl.cell_labels or "the fold's training patients' cell-type folders"
    return Embedding(encoder, f"the cell types of {where}", home, shared)


def single_cell_encoder(
    cohort: Cohort, cache: Any, patients: Sequence[str], ssl: SSLConfig, progress: bool = True
) -> CellEncoder:
    """The supervised baseline of the second paper: an encoder trained to tell cell types apart, on a
    single-cell data set (``ssl.cell_labels``; no patient of the cohort) or on the cell-type folders of
    ``patients`` (a fold's training patients)."""
    from ..data.labelled_cells import from_cell_types, from_cellset
    from ..data.options import DataOptions
    from ..data.validation import load
    from .cell_classifier import train_cell_encoder

    if ssl.cell_labels:
        found = load(ssl.cell_labels, DataOptions(), progress=progress)
        if not isinstance(found, CellSet):
            raise ValueError(f"cell_labels {ssl.cell_labels}: not a single-cell data set (<class>/*.jpg)")
        cells = from_cellset(found, ssl.image.preprocessing, cache.directory.parent, progress)
    else:
        cells = from_cell_types(cohort, cache, patients)
    return train_cell_encoder(cells, ssl, progress=progress)


def learns_cell_types(cohort: Cohort, ssl: SSLConfig) -> bool:
    """Whether a single-cell encoder has cell types to learn: ``ssl.cell_labels`` or the cohort's folders."""
    return bool(ssl.cell_labels) or cohort.has_cell_types


def check_cell_types(cohort: Cohort, ssl: SSLConfig) -> None:
    if not learns_cell_types(cohort, ssl):
        raise ValueError(
            f"a single-cell encoder: {cohort.root} has no cell-type folders; give cells.cell_labels (experts "
            "config) or cell_labels (ssl config), a labelled single-cell data set such as blood-cells-dev"
        )


def _needs(value: Any, source: str) -> Any:
    if value is None:  # pragma: no cover - the callers always resolve it
        raise ValueError(f"the {source} cell source needs its config")
    return value


@CELL_SOURCES.register("features")
def stored_features(ctx: SourceContext) -> Featurizer:
    from ..data.features import FeatureStore

    directory = _needs(ctx.features, "features")
    store = FeatureStore(directory)  # a clear error for a folder that holds none
    sources = store.encoder.get("sources") or []
    learnt = ", ".join(str(x.get("data")) for x in sources) if sources else "what its encoder was pre-trained on"
    return Stored(Path(directory), f"features extracted beforehand ({learnt})")
