"""Batched SSL views with kornia: multi-crop random resized crops, flips, 90-degree rotations,
colour jitter, blur, grey-scale and (for DINO's second global view) solarisation."""

from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as K
import torch
from torch import nn

from ..augment import random_rot90


@dataclass(frozen=True)
class ViewConfig:
    global_size: int = 64
    local_size: int = 32
    n_global: int = 2
    n_local: int = 0  # SwAV and DINO use several small local crops; SimCLR none
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)
    jitter: float = 0.4
    hue: float = 0.05  # stain colours carry meaning: keep hue changes small
    blur: float = 0.5
    grayscale: float = 0.2
    solarize: float = 0.0  # probability, applied to the second global view only (DINO: 0.2)


class SSLViews(nn.Module):
    """Maps a batch of cells (N, 3, H, W) in [0, 1] to ``n_global + n_local`` augmented views."""

    def __init__(self, config: ViewConfig | None = None):
        super().__init__()
        self.config = c = config or ViewConfig()

        def pipeline(size: int, scale: tuple[float, float], solarize: float) -> nn.Sequential:
            steps: list[nn.Module] = [
                K.RandomResizedCrop((size, size), scale=scale),
                K.RandomHorizontalFlip(),
                K.RandomVerticalFlip(),
                K.ColorJitter(c.jitter, c.jitter, c.jitter, c.hue, p=0.8),
                K.RandomGrayscale(p=c.grayscale),
                K.RandomGaussianBlur((5, 5), (0.1, 2.0), p=c.blur),
            ]
            if solarize > 0:
                steps.append(K.RandomSolarize(0.1, 0.1, p=solarize))
            return nn.Sequential(*steps)

        self.globals = nn.ModuleList(
            pipeline(c.global_size, c.global_scale, c.solarize if i == 1 else 0.0) for i in range(c.n_global)
        )
        self.local = pipeline(c.local_size, c.local_scale, 0.0) if c.n_local else None

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        views = [random_rot90(p(images)).clamp(0, 1).contiguous() for p in self.globals]
        if self.local is not None:
            views += [random_rot90(self.local(images)).clamp(0, 1).contiguous() for _ in range(self.config.n_local)]
        return views
