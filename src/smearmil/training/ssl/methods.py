"""Self-supervised methods as modules: an encoder, its heads and a ``training_loss`` over augmented views.

A method is a class registered in ``SSL_METHODS`` with its hyper-parameters (``Params``) and its
view defaults (local crops, solarisation); a config names it as ``method: {name: simclr, ...}``.
SimCLR, SwAV and DINO each live in a module of their own; a new method is one new file and one declaration
(``training.config.components``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from ...utils.registry import NoParams


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
    """``training_loss(views, epoch)``; ``after_backward`` and ``after_step`` hooks; ``exported_encoder``.

    Subclasses take ``(encoder, params, n_global)`` and may change the view defaults below.
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    local_crops: ClassVar[int] = 0  # small crops beside the global views (multi-crop)
    solarize: ClassVar[float] = 0.0  # probability of solarising the second global view
    encoder: nn.Module

    def __init__(self, encoder: nn.Module, params: Any = None, n_global: int = 2):
        super().__init__()
        self.encoder, self.n_global = encoder, n_global
        self.c: Any = params if params is not None else self.Params()

    def training_loss(self, views: list[torch.Tensor], epoch: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_backward(self, epoch: int) -> None:
        pass

    def after_step(self, progress: float) -> None:
        pass

    @property
    def exported_encoder(self) -> nn.Module:
        return self.encoder
