"""SwAV (Caron et al. 2020): prototypes, Sinkhorn-Knopp codes, swapped prediction, multi-crop, a queue."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...models.ssl_heads import ProjectionHead, Prototypes
from ...utils.distributed import gather_with_gradient, rank, world_size
from ..config.components import SSL_METHODS, SwAVParams
from .losses import SwAVLoss
from .methods import SSLMethod, encode_views


@SSL_METHODS.register("swav")
class SwAV(SSLMethod):
    """Swapped prototype prediction with multi-crop and an optional queue of earlier embeddings."""

    Params = SwAVParams
    local_crops = 4
    queue: torch.Tensor
    queue_filled: torch.Tensor

    def __init__(self, encoder: nn.Module, params: SwAVParams | None = None, n_global: int = 2):
        super().__init__(encoder, params, n_global)
        c = self.c
        self.head = ProjectionHead(encoder.out_dim, c.hidden, c.out_dim)  # type: ignore[arg-type]
        self.prototypes = Prototypes(c.out_dim, c.prototypes)
        self.criterion = SwAVLoss(c.temperature, c.epsilon, c.sinkhorn_iterations)
        self.register_buffer("queue", torch.zeros(c.queue_length, c.out_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:
        self.prototypes.normalise()
        z = [F.normalize(self.head(h), dim=1) for h in encode_views(self.encoder, views)]
        scores = [self.prototypes(zi) for zi in z]
        queue_scores = None
        if self.c.queue_length and epoch >= self.c.queue_start_epoch and int(self.queue_filled) >= self.c.queue_length:
            # every process holds the same queue (of every process's embeddings) and scores its share of
            # it: the Sinkhorn sums, all-reduced, count each queued embedding once, as one process would
            queue_scores = self.prototypes(self.queue[rank() :: world_size()])
        loss = self.criterion(scores, self.n_global, queue_scores)
        if self.c.queue_length:
            self._enqueue(torch.cat([gather_with_gradient(zi.detach()) for zi in z[: self.n_global]]))
        return loss

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        z = z[: self.c.queue_length]
        self.queue.copy_(torch.cat([z.to(self.queue.dtype), self.queue])[: self.c.queue_length])
        self.queue_filled.add_(z.shape[0]).clamp_(max=self.c.queue_length)

    def after_backward(self, epoch: int) -> None:
        if epoch < self.c.freeze_prototypes_epochs:  # SwAV: prototypes stay fixed at first
            self.prototypes.layer.weight.grad = None
