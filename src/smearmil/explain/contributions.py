"""How much each cell contributes to its patient's decision.

Attention pooling: the attention weight. Mean pooling: the cell's share of the logit, w . h_i / n.
Max pooling: the sum of w_d h_id over the features d the cell wins. Log-sum-exp: w . (s_i * h_i),
with s_i the cell's soft-max share per feature. For a mixture, the image expert's contributions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models.base import Bags, MILModel
from ..models.experts import CNNModel
from ..models.fusion import AverageModel, MixtureOfExperts
from ..models.pooling import AttentionPooling, LSEPooling, MaxPooling, MeanPooling, segment_softmax


def image_expert(model: MILModel) -> CNNModel | None:
    if isinstance(model, CNNModel):
        return model
    if isinstance(model, (AverageModel, MixtureOfExperts)):
        return model.cnn
    return None


@torch.no_grad()
def cell_contributions(model: MILModel, images: torch.Tensor, target: int | None = None) -> np.ndarray:
    """Contribution of each cell of one bag (normalised images, (n, 3, H, W)) to the logit of ``target``
    (default: the positive class for two classes, else the predicted class)."""
    cnn = image_expert(model)
    if cnn is None:
        raise ValueError("this model does not look at cells")
    cnn.eval()
    segments = torch.zeros(len(images), dtype=torch.long, device=images.device)
    h = cnn.encode(images)
    pooled, weights = cnn.pooling(h, segments, 1)
    logits = cnn.classifier(pooled)
    column = 0 if logits.shape[1] == 1 else (int(logits.argmax(1)) if target is None else target)
    w = cnn.classifier.weight[column]  # (D,)
    pooling = cnn.pooling
    if isinstance(pooling, AttentionPooling):
        out = weights
    elif isinstance(pooling, MeanPooling):
        out = (h @ w) / len(h)
    elif isinstance(pooling, MaxPooling):
        winners = (h == pooled).to(h.dtype)
        out = (winners / winners.sum(0).clamp(min=1) * h * w).sum(1)
    elif isinstance(pooling, LSEPooling):
        share = segment_softmax(pooling.r * h, segments, 1)
        out = (share * h * w).sum(1)
    else:  # any other pooling: its own weights
        out = weights
    return out.float().cpu().numpy()


def as_bags(images: torch.Tensor, attributes: torch.Tensor) -> Bags:
    return Bags(images, torch.zeros(len(images), dtype=torch.long, device=images.device), 1, attributes)
