"""Heads that self-supervised methods put on top of a cell encoder (dropped after pre-training)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ProjectionHead(nn.Module):
    """SimCLR / SwAV projection: Linear -> BatchNorm -> ReLU -> Linear."""

    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Prototypes(nn.Module):
    """SwAV's prototypes: scores are cosine similarities of L2-normalised embeddings and prototypes."""

    def __init__(self, dim: int, n_prototypes: int = 64):
        super().__init__()
        self.layer = nn.Linear(dim, n_prototypes, bias=False)

    @torch.no_grad()
    def normalise(self) -> None:
        self.layer.weight.copy_(F.normalize(self.layer.weight, dim=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(F.normalize(z, dim=1))


class DINOHead(nn.Module):
    """DINO's head: MLP to a bottleneck, L2 normalisation, weight-normalised linear layer to K outputs."""

    def __init__(self, in_dim: int, hidden: int = 256, bottleneck: int = 64, out_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)  # norm of each output's weights
        self.last.parametrizations.weight.original0.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=1))
