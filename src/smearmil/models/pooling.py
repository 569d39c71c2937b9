"""Permutation-invariant bag pooling on a flat batch of cells with a segment (patient) index.

Every pooling maps ``(x: (N, D), segments: (N,), n_bags)`` to ``(pooled: (B, D), weights: (N,))``,
where ``weights`` says how much each cell contributes to its bag (they sum to 1 within a bag).
Bags of any size share one batch, with no padding.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import Registry

POOLINGS: Registry[nn.Module] = Registry("pooling")


def segment_count(segments: torch.Tensor, n_bags: int) -> torch.Tensor:
    return torch.bincount(segments, minlength=n_bags).clamp(min=1)


def segment_sum(x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> torch.Tensor:
    out = x.new_zeros((n_bags, *x.shape[1:]))
    return out.index_add(0, segments, x)


def segment_max(x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> torch.Tensor:
    index = segments.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    out = x.new_full((n_bags, *x.shape[1:]), -torch.inf)
    return out.scatter_reduce(0, index, x, reduce="amax", include_self=True)


def segment_softmax(scores: torch.Tensor, segments: torch.Tensor, n_bags: int) -> torch.Tensor:
    """Softmax of ``scores`` (N,) or (N, D) within each segment; stable for any bag size."""
    shifted = scores - segment_max(scores, segments, n_bags).detach()[segments]
    e = shifted.exp()
    return e / segment_sum(e, segments, n_bags)[segments]


class MeanPooling(nn.Module):
    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts = segment_count(segments, n_bags).to(x.dtype)
        return segment_sum(x, segments, n_bags) / counts[:, None], 1.0 / counts[segments]


class MaxPooling(nn.Module):
    """Feature-wise max; a cell's weight is the share of features for which it is the maximum."""

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = segment_max(x, segments, n_bags)
        winners = (x == pooled[segments]).to(x.dtype)
        ties = segment_sum(winners, segments, n_bags)[segments].clamp(min=1)
        weights = (winners / ties).mean(dim=1)
        return pooled, weights


class LSEPooling(nn.Module):
    """Log-sum-exp with temperature r: (logsumexp(r x) - log N) / r; max as r grows, mean as r -> 0."""

    def __init__(self, r: float = 1.0):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LSE temperature r must be positive, got {r}")
        self.r = r

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        rx = self.r * x
        peak = segment_max(rx, segments, n_bags).detach()
        sums = segment_sum((rx - peak[segments]).exp(), segments, n_bags)
        counts = segment_count(segments, n_bags).to(x.dtype)
        pooled = (peak + sums.log() - counts.log()[:, None]) / self.r
        weights = segment_softmax(rx, segments, n_bags).mean(dim=1)
        return pooled, weights


class AttentionPooling(nn.Module):
    """Attention MIL pooling (Ilse et al. 2018); ``gated=True`` for the gated variant."""

    def __init__(self, in_dim: int, hidden: int = 128, gated: bool = False):
        super().__init__()
        self.v = nn.Linear(in_dim, hidden)
        self.u = nn.Linear(in_dim, hidden) if gated else None
        self.w = nn.Linear(hidden, 1)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.v(x))
        if self.u is not None:
            h = h * torch.sigmoid(self.u(x))
        return self.w(h).squeeze(-1)

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        weights = segment_softmax(self.scores(x), segments, n_bags)
        return segment_sum(weights[:, None] * x, segments, n_bags), weights


@POOLINGS.register("mean")
def _mean(**_: object) -> nn.Module:
    return MeanPooling()


@POOLINGS.register("max")
def _max(**_: object) -> nn.Module:
    return MaxPooling()


@POOLINGS.register("lse")
def _lse(r: float = 1.0, **_: object) -> nn.Module:
    return LSEPooling(r)


@POOLINGS.register("attention")
def _attention(in_dim: int, hidden: int = 128, **_: object) -> nn.Module:
    return AttentionPooling(in_dim, hidden, gated=False)


@POOLINGS.register("gated_attention")
def _gated(in_dim: int, hidden: int = 128, **_: object) -> nn.Module:
    return AttentionPooling(in_dim, hidden, gated=True)

