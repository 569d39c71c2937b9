"""How much each cell adds to its patient's logit: the signed, exact decomposition each pooling gives.

Sign convention: a positive contribution pushes the patient toward the target class (for two classes,
the positive class, ``class_names[1]``), a negative one away from it; the unit is the logit. With more
classes the score explained is the target's logit minus the mean of all logits (what the soft-max
responds to: adding the same amount to every logit changes nothing). For mean, attention and gated
attention the contributions of a bag sum to that score minus the same combination of the biases;
max gives the winning features' share, log-sum-exp the soft-max share (``Pooling.contributions``). A
fusion model's contributions are those of its image expert.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .base import MILModel
from .feature_mil import FeatureMIL
from .pooling import Pooling


def target_column(logits: torch.Tensor, target: int | None) -> int:
    """The logit column explained: the only one for two classes, else ``target`` or the predicted class."""
    if logits.shape[1] == 1:
        return 0
    return int(logits.argmax(1)) if target is None else target


def every_column(h: torch.Tensor, pooling: Pooling, classifier: nn.Linear) -> tuple[np.ndarray, torch.Tensor]:
    """The contributions of the cells of one bag of embeddings ``h`` (n, D) to every logit column
    (n, columns), and the bag's logits (columns,), from one pooling of ``h``."""
    segments = torch.zeros(len(h), dtype=torch.long, device=h.device)
    pooled, weights = pooling(h, segments, 1)
    w = classifier.weight
    if w.shape[0] > 1:  # soft-max: toward each class relative to the others
        w = w - w.mean(0)
    out = torch.stack([pooling.contributions(h, segments, 1, pooled, weights, row) for row in w], dim=1)
    return out.float().cpu().numpy(), classifier(pooled)[0]


def pooled_contributions(
    h: torch.Tensor, pooling: Pooling, classifier: nn.Linear, target: int | None = None
) -> tuple[np.ndarray, int]:
    """Contributions of the cells of one bag of embeddings ``h`` (n, D), and the logit column explained."""
    found, logits = every_column(h, pooling, classifier)
    column = target_column(logits[None], target)
    return found[:, column], column


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
    found, logits = bag_explanation(model, images, prepare)
    return found[:, target_column(logits[None], target)]


@torch.no_grad()
def bag_explanation(
    model: MILModel, images: torch.Tensor, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> tuple[np.ndarray, torch.Tensor]:
    """One pass of the image expert over one bag: each cell's contribution to every logit column (n, columns)
    and the expert's logits (columns,), which for an image-only model are the model's own."""
    cnn = model.image_expert()
    if cnn is None:
        raise ValueError("this model does not look at cells")
    cnn.eval()
    return every_column(cnn.encode(images, prepare), cnn.pooling, cnn.classifier)


@torch.no_grad()
def feature_contributions(model: FeatureMIL, features: torch.Tensor, target: int | None = None) -> np.ndarray:
    """The same for a MIL head on cached cell embeddings ``features`` (n, d)."""
    found, logits = feature_explanation(model, features)
    return found[:, target_column(logits[None], target)]


@torch.no_grad()
def feature_explanation(model: FeatureMIL, features: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """One pass of a MIL head over one bag of cell embeddings: contributions to every column, and its logits."""
    model.eval()
    return every_column(model.project((features - model.mean) / model.std), model.pooling, model.classifier)
