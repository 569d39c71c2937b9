"""How much each cell contributes to its patient's decision.

Each pooling says how (``Pooling.contributions``): attention pooling, the attention weight; mean
pooling, the cell's share of the logit, w . h_i / n; max pooling, the sum of w_d h_id over the
features d the cell wins; log-sum-exp, w . (s_i * h_i), with s_i the cell's soft-max share per
feature. For a fusion model, the image expert's contributions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..models.base import Bags, MILModel


@torch.no_grad()
def cell_contributions(
    model: MILModel,
    images: torch.Tensor,
    target: int | None = None,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Contribution of each cell of one bag to the logit of ``target`` (default: the positive class for two
    classes, else the predicted class). ``images``: normalised (n, 3, H, W), or raw uint8 (n, H, W, 3)
    with ``prepare``, which normalises them chunk by chunk."""
    cnn = model.image_expert()
    if cnn is None:
        raise ValueError("this model does not look at cells")
    cnn.eval()
    segments = torch.zeros(len(images), dtype=torch.long, device=images.device)
    h = cnn.encode(images, prepare)
    pooled, weights = cnn.pooling(h, segments, 1)
    logits = cnn.classifier(pooled)
    column = 0 if logits.shape[1] == 1 else (int(logits.argmax(1)) if target is None else target)
    w = cnn.classifier.weight[column]  # (D,)
    out = cnn.pooling.contributions(h, segments, 1, pooled, weights, w)
    return out.float().cpu().numpy()


def as_bags(images: torch.Tensor, attributes: torch.Tensor) -> Bags:
    """One bag of ``images`` with its attributes (1, d)."""
    return Bags.of(attributes, [images])
