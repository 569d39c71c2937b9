"""Guided backpropagation times input (captum) for cells under any model that looks at cells."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from ..models.base import Bags, MILModel


class _BagLogit(nn.Module):
    """The patient's logit as a function of its cells (the attributes held fixed)."""

    def __init__(self, model: MILModel, attributes: torch.Tensor):
        super().__init__()
        self.model, self.attributes = model, attributes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(Bags.of(self.attributes, [images])).logits


def guided_saliency(model: MILModel, images: torch.Tensor, attributes: torch.Tensor, target: int = 0) -> np.ndarray:
    """(n, H, W) saliency of each cell of one bag: |guided gradient x input| summed over channels."""
    from captum.attr import GuidedBackprop

    explained = copy.deepcopy(model).eval()
    for module in explained.modules():  # captum hooks ReLU modules; in-place ones break the hooks
        if isinstance(module, nn.ReLU):
            module.inplace = False
    inputs = images.detach().clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*backward hooks on ReLU.*")
        grads = GuidedBackprop(_BagLogit(explained, attributes)).attribute(inputs, target=target)
    return (grads * inputs).detach().abs().sum(dim=1).cpu().numpy()
