"""Permutation-invariant bag pooling on a flat batch of cells with a segment (patient) index.

Every pooling maps ``(x: (N, D), segments: (N,), n_bags)`` to ``(pooled: (B, D), weights: (N,))``,
where ``weights`` says how much each cell contributes to its bag (they sum to 1 within a bag).
Bags of any size share one batch, with no padding. A pooling declares its hyper-parameters
(``Params``) and how much each cell adds to a linear score of the pooled vector (``contributions``);
a new pooling is one class registered in ``POOLINGS``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from ..utils.registry import NoParams
from .specs import POOLINGS, AttentionParams, LSEParams


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


class Pooling(nn.Module):
    """Base class: ``Params`` (pydantic) are the hyper-parameters a config may set."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, in_dim: int, params: Any = None):
        super().__init__()
        self.in_dim = in_dim
        self.p: Any = params if params is not None else self.Params()

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def contributions(
        self,
        h: torch.Tensor,
        segments: torch.Tensor,
        n_bags: int,
        pooled: torch.Tensor,
        weights: torch.Tensor,
        w: torch.Tensor,
    ) -> torch.Tensor:
        """Each cell's part in the score ``w . pooled`` of its bag (default: its pooling weight)."""
        return weights


@POOLINGS.register("mean")
class MeanPooling(Pooling):
    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        counts = segment_count(segments, n_bags).to(x.dtype)
        return segment_sum(x, segments, n_bags) / counts[:, None], 1.0 / counts[segments]

    def contributions(
        self,
        h: torch.Tensor,
        segments: torch.Tensor,
        n_bags: int,
        pooled: torch.Tensor,
        weights: torch.Tensor,
        w: torch.Tensor,
    ) -> torch.Tensor:
        """The exact decomposition: w . h_i / n."""
        return (h @ w) / segment_count(segments, n_bags).to(h.dtype)[segments]


@POOLINGS.register("max")
class MaxPooling(Pooling):
    """Feature-wise max; a cell's weight is the share of features for which it is the maximum."""

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = segment_max(x, segments, n_bags)
        winners = (x == pooled[segments]).to(x.dtype)
        ties = segment_sum(winners, segments, n_bags)[segments].clamp(min=1)
        weights = (winners / ties).mean(dim=1)
        return pooled, weights

    def contributions(
        self,
        h: torch.Tensor,
        segments: torch.Tensor,
        n_bags: int,
        pooled: torch.Tensor,
        weights: torch.Tensor,
        w: torch.Tensor,
    ) -> torch.Tensor:
        """Sum of w_d h_id over the features d the cell wins (shared among ties)."""
        winners = (h == pooled[segments]).to(h.dtype)
        ties = segment_sum(winners, segments, n_bags)[segments].clamp(min=1)
        return (winners / ties * h * w).sum(1)


@POOLINGS.register("lse")
class LSEPooling(Pooling):
    """Log-sum-exp with temperature r: (logsumexp(r x) - log N) / r; max as r grows, mean as r -> 0."""

    Params = LSEParams

    def __init__(self, in_dim: int, params: LSEParams | None = None):
        super().__init__(in_dim, params)
        self.r = float(self.p.r)

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        rx = self.r * x
        peak = segment_max(rx, segments, n_bags).detach()
        sums = segment_sum((rx - peak[segments]).exp(), segments, n_bags)
        counts = segment_count(segments, n_bags).to(x.dtype)
        pooled = (peak + sums.log() - counts.log()[:, None]) / self.r
        weights = segment_softmax(rx, segments, n_bags).mean(dim=1)
        return pooled, weights

    def contributions(
        self,
        h: torch.Tensor,
        segments: torch.Tensor,
        n_bags: int,
        pooled: torch.Tensor,
        weights: torch.Tensor,
        w: torch.Tensor,
    ) -> torch.Tensor:
        """w . (s_i * h_i), with s_i the cell's soft-max share per feature."""
        return (segment_softmax(self.r * h, segments, n_bags) * h * w).sum(1)


@POOLINGS.register("attention")
class AttentionPooling(Pooling):
    """Attention MIL pooling (Ilse et al. 2018); a cell's contribution is a_i w . h_i (exact, signed)."""

    Params = AttentionParams
    gated: ClassVar[bool] = False

    def __init__(self, in_dim: int, params: AttentionParams | None = None):
        super().__init__(in_dim, params)
        hidden = self.p.hidden
        self.v = nn.Linear(in_dim, hidden)
        self.u = nn.Linear(in_dim, hidden) if self.gated else None
        self.w = nn.Linear(hidden, 1)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.v(x))
        if self.u is not None:
            h = h * torch.sigmoid(self.u(x))
        return self.w(h).squeeze(-1)

    def forward(self, x: torch.Tensor, segments: torch.Tensor, n_bags: int) -> tuple[torch.Tensor, torch.Tensor]:
        weights = segment_softmax(self.scores(x), segments, n_bags)
        return segment_sum(weights[:, None] * x, segments, n_bags), weights

    def contributions(
        self,
        h: torch.Tensor,
        segments: torch.Tensor,
        n_bags: int,
        pooled: torch.Tensor,
        weights: torch.Tensor,
        w: torch.Tensor,
    ) -> torch.Tensor:
        """The exact decomposition of w . sum_i a_i h_i: the attention weight times the cell's score."""
        return weights * (h @ w)


@POOLINGS.register("gated_attention")
class GatedAttentionPooling(AttentionPooling):
    """The gated variant: tanh(V x) * sigmoid(U x) before the score."""

    gated = True
