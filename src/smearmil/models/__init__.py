"""Models layer: encoders, bag poolings, experts and their fusion, each behind a registry."""

from .base import Bags, MILModel, MILOutput, probabilities
from .config import MODELS, ModelConfig, build_model
from .encoders import ENCODERS, ResNetK
from .pooling import POOLINGS

__all__ = ["ENCODERS", "MODELS", "POOLINGS", "Bags", "MILModel", "MILOutput", "ModelConfig", "ResNetK",
           "build_model", "probabilities"]
