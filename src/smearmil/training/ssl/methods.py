"""SimCLR, SwAV and DINO as modules: an encoder, its heads and a ``training_loss`` over augmented views."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from ...models.ssl_heads import DINOHead, Prototypes, ProjectionHead
from .config import DINOConfig, SimCLRConfig, SSLConfig, SwAVConfig
from .losses import DINOLoss, NTXentLoss, SwAVLoss


def encode_views(encoder: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Embeddings of every view; views of one size go through the encoder in one batch."""
    out: list[torch.Tensor | None] = [None] * len(views)
    sizes = sorted({v.shape[-1] for v in views}, reverse=True)
    for size in sizes:
        chosen = [i for i, v in enumerate(views) if v.shape[-1] == size]
        chunks = encoder(torch.cat([views[i] for i in chosen])).split(views[chosen[0]].shape[0])
        for i, chunk in zip(chosen, chunks):
            out[i] = chunk
    return out  # type: ignore[return-value]


class SSLMethod(nn.Module):
    """``training_loss(views, epoch)``; ``after_backward`` and ``after_step`` hooks; ``exported_encoder``."""

    encoder: nn.Module

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_backward(self, epoch: int) -> None:
        pass

    def after_step(self, progress: float) -> None:
        pass

    @property
    def exported_encoder(self) -> nn.Module:
        return self.encoder


class SimCLR(SSLMethod):
    def __init__(self, encoder: nn.Module, c: SimCLRConfig):
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(encoder.out_dim, c.hidden, c.out_dim)  # type: ignore[arg-type]
        self.criterion = NTXentLoss(c.temperature)

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:
        z1, z2 = (self.head(h) for h in encode_views(self.encoder, views[:2]))
        return self.criterion(z1, z2)


class SwAV(SSLMethod):
    """Swapped prototype prediction with multi-crop and an optional queue of earlier embeddings."""

    def __init__(self, encoder: nn.Module, c: SwAVConfig, n_global: int = 2):
        super().__init__()
        self.encoder, self.c, self.n_global = encoder, c, n_global
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
            queue_scores = self.prototypes(self.queue)
        loss = self.criterion(scores, self.n_global, queue_scores)
        if self.c.queue_length:
            self._enqueue(torch.cat(z[: self.n_global]).detach())
        return loss

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        z = z[: self.c.queue_length]
        self.queue.copy_(torch.cat([z.to(self.queue.dtype), self.queue])[: self.c.queue_length])
        self.queue_filled.add_(z.shape[0]).clamp_(max=self.c.queue_length)

    def after_backward(self, epoch: int) -> None:
        if epoch < self.c.freeze_prototypes_epochs:  # SwAV: prototypes stay fixed at first
            self.prototypes.layer.weight.grad = None


class DINO(SSLMethod):
    """Self-distillation: a student matches an EMA teacher that sees only the global views."""

    def __init__(self, encoder: nn.Module, c: DINOConfig, n_global: int = 2):
        super().__init__()
        self.c, self.n_global = c, n_global
        self.encoder = encoder
        self.head = DINOHead(encoder.out_dim, c.hidden, c.bottleneck, c.out_dim)  # type: ignore[arg-type]
        self.teacher_encoder, self.teacher_head = copy.deepcopy(encoder), copy.deepcopy(self.head)
        for p in (*self.teacher_encoder.parameters(), *self.teacher_head.parameters()):
            p.requires_grad = False
        self.criterion = DINOLoss(c.out_dim, c.student_temperature, c.teacher_temperature, c.center_momentum)

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:
        student = [self.head(h) for h in encode_views(self.encoder, views)]
        with torch.no_grad():
            teacher = [self.teacher_head(h) for h in encode_views(self.teacher_encoder, views[: self.n_global])]
        return self.criterion(student, teacher)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        m = 1 - (1 - self.c.teacher_momentum) * (math.cos(math.pi * min(progress, 1.0)) + 1) / 2
        for student, teacher in ((self.encoder, self.teacher_encoder), (self.head, self.teacher_head)):
            for ps, pt in zip(student.parameters(), teacher.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            for bs, bt in zip(student.buffers(), teacher.buffers()):
                bt.copy_(bs)

    @property
    def exported_encoder(self) -> nn.Module:
        return self.teacher_encoder  # DINO evaluates the teacher


def build_method(config: SSLConfig, encoder: nn.Module) -> SSLMethod:
    n_global = config.view_config.n_global
    if config.method == "simclr":
        return SimCLR(encoder, config.simclr)
    if config.method == "swav":
        return SwAV(encoder, config.swav, n_global)
    return DINO(encoder, config.dino, n_global)
