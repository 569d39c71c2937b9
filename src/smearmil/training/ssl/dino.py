"""DINO (Caron et al. 2021): a student matches an EMA teacher, centred and sharpened, over multi-crop views."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ...models.ssl_heads import DINOHead
from ..config.components import SSL_METHODS, DINOParams
from .losses import DINOLoss
from .methods import SSLMethod, encode_views


@SSL_METHODS.register("dino")
class DINO(SSLMethod):
    """Self-distillation: a student matches an EMA teacher that sees only the global views."""

    Params = DINOParams
    local_crops = 4
    solarize = 0.2

    def __init__(self, encoder: nn.Module, params: DINOParams | None = None, n_global: int = 2):
        super().__init__(encoder, params, n_global)
        c = self.c
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
