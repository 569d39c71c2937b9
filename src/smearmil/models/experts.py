"""The two experts of the paper: a CNN over the cells with bag pooling, and an MLP on attributes."""

from __future__ import annotations

import torch
from torch import nn

from .base import Bags, MILModel, MILOutput, n_outputs
from .pooling import POOLINGS


class CNNModel(MILModel):
    """Encoder on every cell, permutation-invariant pooling, linear classifier (Eq. 8-10)."""

    def __init__(self, encoder: nn.Module, pooling: str, n_classes: int, pooling_args: dict | None = None,
                 dropout: float = 0.0, chunk: int = 1024):
        super().__init__()
        self.n_classes = n_classes
        self.encoder = encoder
        self.embed_dim: int = encoder.out_dim  # type: ignore[assignment]
        self.pooling = POOLINGS.build(pooling, in_dim=self.embed_dim, **(pooling_args or {}))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.embed_dim, n_outputs(n_classes))
        self.chunk = chunk

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Cell embeddings; in inference, in chunks so that a bag of thousands of cells fits in memory."""
        if self.training or images.shape[0] <= self.chunk:
            return self.encoder(images)
        return torch.cat([self.encoder(images[i : i + self.chunk]) for i in range(0, images.shape[0], self.chunk)])

    def embed(self, bags: Bags) -> tuple[torch.Tensor, torch.Tensor]:
        if bags.images is None:
            raise ValueError("the CNN expert needs cell images")
        return self.pooling(self.encode(bags.images), bags.segments, bags.n_bags)

    def forward(self, bags: Bags) -> MILOutput:
        pooled, weights = self.embed(bags)
        return MILOutput(self.classifier(self.dropout(pooled)), weights, {"embedding": pooled})


class MLPModel(MILModel):
    """Attributes -> a few sigmoid hidden units -> output (Eq. 11-13)."""

    uses_images = False

    def __init__(self, n_attributes: int, n_classes: int, hidden: int = 2):
        super().__init__()
        if n_attributes < 1:
            raise ValueError("the MLP expert needs at least one clinical attribute")
        self.n_classes = n_classes
        self.net = nn.Sequential(nn.Linear(n_attributes, hidden), nn.Sigmoid(), nn.Linear(hidden, n_outputs(n_classes)))

    def forward(self, bags: Bags) -> MILOutput:
        return MILOutput(self.net(bags.attributes), None)
