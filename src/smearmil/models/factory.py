"""The validated model configuration and ``build_model``, which builds any registered kind from it."""

from __future__ import annotations

from .base import MILModel
from .kinds import ModelDims, kind_of
from .specs import ModelConfig

__all__ = ["ModelConfig", "build_model"]


def build_model(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    """The whole model of ``config.kind`` with fresh weights (no pre-trained initialisation)."""
    return kind_of(config).build(config, ModelDims(n_classes, n_attributes, input_size))
