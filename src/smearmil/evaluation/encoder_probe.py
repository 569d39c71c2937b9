"""Encoder quality on labelled single cells: kNN and linear probe on frozen features, UMAP by class."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..data.cache import build_cache
from ..data.cohort import CellSet
from ..models.cell_encoder import CellEncoder
from ..utils.plotting import save_figure, subplots


def cell_features(
    encoder: CellEncoder, cells: CellSet, cache_dir: str | Path | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen embeddings and class indices of every readable cell, at the encoder's input size."""
    cache = build_cache(cells.as_cohort(), encoder.preprocessing, cache_dir, progress=progress)
    encoder = encoder.calibrated(cache)
    labels = np.concatenate([np.full(len(cache.rows(c)), cells.class_names.index(c)) for c in cache.patient_ids])
    features = np.concatenate([encoder.embed(cache.bag(c)) for c in cache.patient_ids])
    return features, labels.astype(np.int64)


def probe_scores(
    features: np.ndarray, labels: np.ndarray, test_size: float = 0.3, k: int = 10, seed: int = 0
) -> dict[str, Any]:
    """kNN (cosine, distance-weighted) and logistic-regression accuracy on a fixed stratified split."""
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed
    )
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    knn = KNeighborsClassifier(n_neighbors=min(k, len(idx_train)), metric="cosine", weights="distance")
    knn.fit(unit[idx_train], labels[idx_train])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    probe.fit(features[idx_train], labels[idx_train])
    return {
        "knn_accuracy": float((knn.predict(unit[idx_test]) == labels[idx_test]).mean()),
        "linear_probe_accuracy": float((probe.predict(features[idx_test]) == labels[idx_test]).mean()),
        "n_train": int(len(idx_train)),
        "n_test": int(len(idx_test)),
    }


def umap_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-d UMAP of standardised features (umap-learn)."""
    import umap

    scaled = StandardScaler().fit_transform(features)
    reducer = umap.UMAP(n_neighbors=min(15, len(features) - 1), min_dist=0.2, random_state=seed, n_jobs=1)
    return reducer.fit_transform(scaled)


def category_colours(names: Sequence[str]) -> dict[str, Any]:
    """A distinct colour per category (tab10 up to 10, tab20 up to 20, then a continuous map)."""
    import matplotlib

    names = sorted(names)
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20" if len(names) <= 20 else "gist_ncar"]
    step = 1 / max(1, len(names)) if len(names) > 20 else 1 / cmap.N
    return {name: cmap(i * step) for i, name in enumerate(names)}


def umap_plot(points: np.ndarray, colour: Sequence[Any], path: str | Path, title: str, legend_title: str = "") -> Path:
    """Scatter of 2-d points, categorical colours for strings, a colour bar for numbers."""
    return umap_panels({"": (points, colour)}, path, title, legend_title)


LEGEND_MAX = 12  # categories named in a UMAP's legend; the rarer ones are grouped as "other"
LEGEND_ROWS = 6  # legend entries per column


def legend_groups(counts: Counter[str], most: int = LEGEND_MAX) -> tuple[list[str], str | None]:
    """The categories a legend names, most frequent first: every one when there are at most ``most``,
    else the ``most - 1`` most frequent and the label of the rest (``other (k kinds), n cells``)."""
    order = sorted(counts, key=lambda k: (-counts[k], k))
    if len(order) <= most:
        return order, None
    rest = order[most - 1 :]
    return order[: most - 1], f"other ({len(rest)} kinds), {sum(counts[k] for k in rest)} cells"


def umap_panels(
    panels: dict[str, tuple[np.ndarray, Sequence[Any]]], path: str | Path, title: str, legend_title: str = ""
) -> Path:
    """One scatter per panel (e.g. per fold, when each fold has its own encoder) with shared colours; a
    categorical legend sits below the panels in columns, naming at most ``LEGEND_MAX`` categories (the rest
    grey, as "other")."""
    values = {name: np.asarray(colour) for name, (_, colour) in panels.items()}
    numeric = all(v.dtype.kind in "fiu" for v in values.values())
    counts = Counter(() if numeric else (str(x) for v in values.values() for x in v.tolist()))
    named, other = legend_groups(counts)
    rows = min(LEGEND_ROWS, len(named) + (other is not None))
    legend_height = 0.0 if numeric else 0.25 * rows + 0.5
    fig, axes = subplots(
        1,
        len(panels),
        figsize=(4.6 * len(panels) + (0.8 if numeric else 0.4), 4.4 + legend_height),
        squeeze=False,
        layout="constrained",
    )
    if numeric:
        low = min(float(v.min()) for v in values.values())
        high = max(float(v.max()) for v in values.values())
    else:
        colours = category_colours(named)
    for ax, (name, (points, _)) in zip(axes[0], panels.items()):
        v = values[name]
        if numeric:
            sc = ax.scatter(points[:, 0], points[:, 1], c=v, s=6, cmap="viridis", vmin=low, vmax=high)
        else:
            text = np.array([str(x) for x in v.tolist()])
            rest = ~np.isin(text, named)
            if other is not None:
                label = other if ax is axes[0][0] else None
                ax.scatter(points[rest, 0], points[rest, 1], s=4, color="lightgrey", label=label)
            for kind in named:  # most frequent first
                colour, chosen = colours[kind], text == kind
                ax.scatter(
                    points[chosen, 0],
                    points[chosen, 1],
                    s=6,
                    color=colour,
                    label=f"{kind} ({counts[kind]})" if ax is axes[0][0] else None,
                )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name or title, fontsize=10)
    if len(panels) > 1:
        fig.suptitle(title)
    if numeric:
        fig.colorbar(sc, ax=list(axes[0]), label=legend_title)
    else:
        handles, labels = axes[0][0].get_legend_handles_labels()
        if other is not None:  # "other" last
            handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
        columns = -(-len(handles) // LEGEND_ROWS)
        fig.legend(
            handles,
            labels,
            title=legend_title,
            fontsize=7,
            markerscale=2,
            frameon=False,
            loc="outside lower center",
            ncol=max(1, columns),
        )
    return save_figure(fig, path)


def evaluate_encoder(
    encoder: CellEncoder,
    cells: CellSet,
    out: str | Path | None = None,
    cache_dir: str | Path | None = None,
    test_size: float = 0.3,
    k: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """``{"knn_accuracy", "linear_probe_accuracy", "n_train", "n_test"}``; a UMAP plot by class in ``out``."""
    start = time.perf_counter()
    features, labels = cell_features(encoder, cells, cache_dir, progress)
    result = probe_scores(features, labels, test_size, k, seed)
    result["wall_seconds"] = round(time.perf_counter() - start, 2)
    if out is not None:
        names = np.array(cells.class_names)[labels]
        umap_plot(
            umap_embedding(features, seed),
            names,
            Path(out) / "umap.png",
            f"{encoder.meta.get('method', 'encoder')} embeddings of {cells.root.name}",
            "class",
        )
    return result
