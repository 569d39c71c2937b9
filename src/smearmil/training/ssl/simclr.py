"""SimCLR (Chen et al. 2020): two views, a projection head and the NT-Xent loss."""

from __future__ import annotations

import torch
from torch import nn

from ...models.ssl_heads import ProjectionHead
from ..config.components import SSL_METHODS, SimCLRParams
from .losses import NTXentLoss
from .methods import SSLMethod, encode_views


@SSL_METHODS.register("simclr")
class SimCLR(SSLMethod):
    Params = SimCLRParams

    def __init__(self, encoder: nn.Module, params: SimCLRParams | None = None, n_global: int = 2):
        super().__init__(encoder, params, n_global)
        c = self.c
        self.head = ProjectionHead(encoder.out_dim, c.hidden, c.out_dim)  # type: ignore[arg-type]
        self.criterion = NTXentLoss(c.temperature)

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:
        z1, z2 = (self.head(h) for h in encode_views(self.encoder, views[:2]))
        return self.criterion(z1, z2)
