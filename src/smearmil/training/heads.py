"""Training MIL heads on cached features: a plain, fast loop (the model is tiny; no Lightning needed).

Bags are drawn class-balanced (each class equally likely) by default; a bag larger than
``max_cells_per_bag`` contributes a random subset of its cells in each step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ..data.features import FeatureStore
from ..models.base import Bags, probabilities
from ..models.feature_mil import FeatureMIL
from ..utils.balance import balanced_draw_weights
from ..utils.balance import class_weights as inverse_class_frequency
from .config.head import HeadConfig


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models run faster on one thread, and do not fight a concurrent job for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batch(bags: Sequence[torch.Tensor], labels: torch.Tensor | None = None) -> Bags:
    return Bags.of(torch.zeros(len(bags), 0), features=bags, labels=labels)


def balanced_probabilities(labels: np.ndarray) -> np.ndarray:
    """Per-bag draw probabilities under which every present class is equally likely."""
    p = balanced_draw_weights(labels)
    return p / p.sum()


def train_head(store: FeatureStore, ids: Sequence[str], config: HeadConfig, seed: int = 0) -> FeatureMIL:
    """Fit a head on the labelled patients ``ids`` of ``store``."""
    if len(ids) == 0:
        raise ValueError("no training patients")
    labels = np.array([store.class_names.index(store.label(i)) for i in ids])  # type: ignore[arg-type]
    return fit_head([store.bag(i) for i in ids], labels, len(store.class_names), config, seed)


def fit_head(
    bags: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, config: HeadConfig, seed: int = 0
) -> FeatureMIL:
    """Fit a head on in-memory bags of cell features (``labels``: class indices)."""
    if len(bags) == 0:
        raise ValueError("no training patients")
    rng = np.random.default_rng(seed)
    tensors = [torch.from_numpy(np.asarray(b, dtype=np.float32)) for b in bags]
    cells = torch.cat(tensors)
    with torch.random.fork_rng(), one_thread():
        torch.manual_seed(seed)
        model = FeatureMIL(cells.shape[1], n_classes, config.pooling, config.embed_dim, config.dropout)
        model.set_standardisation(cells.mean(0), cells.std(0))
        class_weights = None
        if config.balance == "weights":
            class_weights = torch.tensor(inverse_class_frequency(labels, n_classes))
        p = balanced_probabilities(labels) if config.balance == "sampler" else None
        optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = config.steps_per_epoch or max(1, int(np.ceil(len(bags) / config.bags_per_batch)))
        model.train()
        for _ in range(config.epochs):
            for _ in range(steps):
                chosen = rng.choice(len(bags), size=min(config.bags_per_batch, len(bags)), replace=p is not None, p=p)
                batch = _batch(
                    [_subsample(tensors[k], config.max_cells_per_bag, rng) for k in chosen],
                    torch.from_numpy(labels[chosen]),
                )
                loss = model.loss(model(batch), batch.labels, class_weights)  # type: ignore[arg-type]
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
    return model.eval()


def _subsample(bag: torch.Tensor, cap: int | None, rng: np.random.Generator) -> torch.Tensor:
    if cap is None or len(bag) <= cap:
        return bag
    return bag[torch.from_numpy(np.sort(rng.choice(len(bag), cap, replace=False)))]


@torch.no_grad()
def predict_head(model: FeatureMIL, store: FeatureStore, ids: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class probabilities (patients x classes) and each patient's per-cell weights (summing to 1)."""
    if not ids:
        return np.zeros((0, len(store.class_names))), []
    return head_predictions(model, [store.bag(i) for i in ids])


@torch.no_grad()
def head_predictions(model: FeatureMIL, bags: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``predict_head`` on in-memory bags of cell features."""
    tensors = [torch.from_numpy(np.asarray(b, dtype=np.float32)) for b in bags]
    batch = _batch(tensors)
    model.eval()
    with one_thread():
        output = model(batch)
    proba = probabilities(output.logits, model.n_classes).numpy()
    weights = output.weights.numpy() if output.weights is not None else np.zeros(len(batch.segments))
    bounds = np.cumsum([0] + [len(b) for b in tensors])
    return proba, [weights[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
