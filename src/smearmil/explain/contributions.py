"""How much each cell contributes to its patient's decision (see ``smearmil.models.contributions``)."""

from __future__ import annotations

import torch

from ..models.base import Bags
from ..models.contributions import cell_contributions, feature_contributions

__all__ = ["as_bags", "cell_contributions", "feature_contributions"]


def as_bags(images: torch.Tensor, attributes: torch.Tensor) -> Bags:
    """One bag of ``images`` with its attributes (1, d)."""
    return Bags.of(attributes, [images])
