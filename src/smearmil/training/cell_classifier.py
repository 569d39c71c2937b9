"""The second paper's supervised baseline encoder: the SSL config's encoder trained as a cell classifier on
labelled single cells (cell types), class-balanced cross-entropy with flips and 90-degree rotations; its
penultimate features are the cell embeddings."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.labelled_cells import LabelledCells
from ..models.cell_encoder import CellEncoder, ChannelNormalise, ChannelStatistics
from ..utils.balance import class_weights
from ..utils.device import default_device
from ..utils.progress import Epochs
from .augment import random_rot90
from .config.ssl import SSLConfig


def train_cell_encoder(
    cells: LabelledCells, config: SSLConfig, epochs: int | None = None, progress: bool = True
) -> CellEncoder:
    """Train ``config.encoder`` with a linear classifier on ``cells`` for ``epochs`` (default
    ``config.cell_epochs``); returns the encoder, normalised with the channel statistics of the cells."""
    if len(cells) == 0:
        raise ValueError("no labelled cell to train a supervised cell encoder on")
    epochs = epochs or config.cell_epochs
    device = default_device()
    statistics = ChannelStatistics()
    rng = np.random.default_rng(config.seed)
    sample = np.sort(rng.choice(cells.rows, min(len(cells), 2000), replace=False))
    statistics.add(cells.cache.read(sample))
    mean, std = statistics.result()
    normalise = ChannelNormalise(mean, std).to(device)
    with torch.random.fork_rng():  # the same seed, the same encoder, whatever ran before
        torch.manual_seed(config.seed)
        encoder, loss = _train(cells, config, epochs, normalise, device, progress)
    meta = {
        "method": "single-cell",
        "encoder": config.encoder.model_dump(),
        "labels": cells.source,
        "classes": cells.class_names,
        "cells": len(cells),
        "epochs": epochs,
        "final_loss": float(loss.detach()),
    }
    return CellEncoder(encoder.eval().cpu(), normalise.cpu(), config.image.preprocessing, meta)


def _train(
    cells: LabelledCells, config: SSLConfig, epochs: int, normalise: nn.Module, device: torch.device, progress: bool
) -> tuple[nn.Module, torch.Tensor]:
    encoder = config.encoder.build(config.image.input_size).to(device)
    classifier = nn.Linear(int(encoder.out_dim), len(cells.class_names)).to(device)
    weights = torch.tensor(class_weights(cells.labels, len(cells.class_names)), dtype=torch.float32, device=device)
    params = [*encoder.parameters(), *classifier.parameters()]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, len(cells))
    encoder.train()
    loss = torch.zeros(())
    steps = sum(1 for start in range(0, len(cells), batch) if len(cells) - start >= 2)
    with Epochs("single-cell encoder (cell types)", epochs, steps, enabled=progress) as shown:
        for epoch in range(epochs):
            order = np.random.default_rng([config.seed, epoch]).permutation(len(cells))
            for start in range(0, len(order), batch):
                if len(order[start : start + batch]) < 2:
                    continue  # a last batch of one cell: batch norm cannot train on it
                rows = cells.rows[order[start : start + batch]]
                labels = cells.labels[order[start : start + batch]]
                sort = np.argsort(rows)
                x = normalise(torch.from_numpy(cells.cache.read(rows[sort])).to(device))
                flips = torch.rand(len(x), 1, 1, 1, device=device) < 0.5
                x = random_rot90(torch.where(flips, x.flip(3), x))
                loss = nn.functional.cross_entropy(
                    classifier(encoder(x)), torch.from_numpy(labels[sort]).to(device), weight=weights
                )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                shown.step(epoch)
            shown.epoch_done(epoch, f"last batch loss {float(loss.detach()):.3f}")
    return encoder, loss
