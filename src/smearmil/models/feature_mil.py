"""MIL heads on cached cell embeddings: standardise, project, pool (any registered pooling), classify."""

from __future__ import annotations

import torch
from torch import nn

from .base import Bags, MILModel, MILOutput, n_outputs
from .specs import FEATURES, PoolingConfig


class FeatureMIL(MILModel):
    """A bag classifier over frozen-encoder features (``bags.features``); weights are per-cell attention."""

    inputs = frozenset({FEATURES})
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        pooling: PoolingConfig | None = None,
        embed_dim: int = 64,
        dropout: float = 0.25,
    ):
        super().__init__()
        self.n_classes = n_classes
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.project = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.pooling = (pooling or PoolingConfig(name="attention", hidden=64)).build(embed_dim)
        self.classifier = nn.Linear(embed_dim, n_outputs(n_classes))

    @torch.no_grad()
    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Centre and scale inputs with statistics of the training cells."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-6))

    def forward(self, bags: Bags) -> MILOutput:
        if bags.features is None:
            raise ValueError("FeatureMIL needs cached cell features (bags.features)")
        h = self.project((bags.features - self.mean) / self.std)
        pooled, weights = self.pooling(h, bags.segments, bags.n_bags)
        return MILOutput(self.classifier(pooled), weights, {"embedding": pooled})
