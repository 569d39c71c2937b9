"""The small interface every MIL model follows: ``forward`` gives logits and per-cell weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .specs import IMAGES

if TYPE_CHECKING:
    from .experts import CNNModel


@dataclass
class Bags:
    """A batch of bags as one flat tensor of cells with a segment (bag) index."""

    images: torch.Tensor | None  # (N, 3, H, W) float, normalised (or raw, with ``prepare``); None: attributes only
    segments: torch.Tensor  # (N,) long, bag index of each cell
    n_bags: int
    attributes: torch.Tensor  # (B, d) float, standardised
    labels: torch.Tensor | None = None  # (B,) long
    ids: list[str] = field(default_factory=list)
    features: torch.Tensor | None = None  # (N, D) float: cached cell embeddings, for heads on frozen encoders
    # raw uint8 cells (N, H, W, 3) -> normalised float (N, 3, H, W), applied chunk by chunk in inference,
    # so that a bag of thousands of cells never exists as one float tensor
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def of(
        cls,
        attributes: torch.Tensor,
        images: Sequence[torch.Tensor] | None = None,
        features: Sequence[torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        ids: Sequence[str] = (),
    ) -> Bags:
        """One batch from per-bag tensors of cells (``images`` or ``features``) and per-bag attributes (B, d)."""
        cells = images if images is not None else features
        segments = torch.zeros(0, dtype=torch.long, device=attributes.device)
        if cells is not None:
            sizes = torch.tensor([len(c) for c in cells])
            segments = torch.repeat_interleave(torch.arange(len(cells)), sizes).to(cells[0].device if cells else "cpu")
        return cls(
            _joined(images),
            segments,
            len(attributes),
            attributes,
            labels,
            list(ids),
            _joined(features),
        )

    def to(self, device: torch.device | str) -> Bags:
        return self._each(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Bags:
        """The batch in page-locked memory (the data loader calls it for GPU training): copies to the GPU
        then overlap with compute."""
        return self._each(lambda t: t.pin_memory())

    def _each(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Bags:
        def apply(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else change(t)

        return Bags(
            apply(self.images),
            change(self.segments),
            self.n_bags,
            change(self.attributes),
            apply(self.labels),
            self.ids,
            apply(self.features),
            self.prepare,
        )


def _joined(parts: Sequence[torch.Tensor] | None) -> torch.Tensor | None:
    """The parts as one tensor; a single part as it is (no copy of a large bag)."""
    if parts is None:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(list(parts))


@dataclass
class MILOutput:
    logits: torch.Tensor  # (B, 1) for two classes (sigmoid), (B, C) otherwise (softmax)
    weights: torch.Tensor | None  # (N,) contribution of each cell to its bag, or None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def n_outputs(n_classes: int) -> int:
    return 1 if n_classes == 2 else n_classes


def probabilities(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(B, C) class probabilities from logits of either form."""
    if n_classes == 2:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def logits_from_probabilities(p: torch.Tensor, n_classes: int, eps: float = 1e-6) -> torch.Tensor:
    """Inverse of ``probabilities``: mixtures of probabilities become logits of the same form."""
    p = p.clamp(eps, 1 - eps)
    if n_classes == 2:
        return (p[:, 1].log() - p[:, 0].log())[:, None]
    return p.log()


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, n_classes: int, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Negative log-likelihood, optionally weighted per class (normalised by the weights' sum)."""
    if n_classes == 2:
        per_bag = F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype), reduction="none")
    else:
        per_bag = F.cross_entropy(logits, labels, reduction="none")
    if class_weights is None:
        return per_bag.mean()
    w = class_weights.to(per_bag.dtype)[labels]
    return (w * per_bag).sum() / w.sum()


class MILModel(nn.Module):
    """Base class: subclasses set ``n_classes``, declare their ``inputs`` and implement ``forward``."""

    n_classes: int
    inputs: ClassVar[frozenset[str]] = frozenset({IMAGES})

    @property
    def uses_images(self) -> bool:
        return IMAGES in self.inputs

    def image_expert(self) -> CNNModel | None:
        """The part that encodes and pools cells (``encoder``, ``pooling``, ``classifier``), if any."""
        return None

    def experts(self) -> dict[str, MILModel]:
        """The experts a fusion model combines, by name (none for a single model)."""
        return {}

    def forward(self, bags: Bags) -> MILOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, output: MILOutput, labels: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
        return classification_loss(output.logits, labels, self.n_classes, class_weights)

    @torch.no_grad()
    def predict_proba(self, bags: Bags) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return probabilities(self(bags).logits.float(), self.n_classes)
        finally:
            self.train(was_training)
