"""Models layer: encoders, bag poolings, experts and their fusion, each kind behind a registry."""

from . import experts, fusion  # noqa: F401  (registration of the model kinds)
from .base import Bags, MILModel, MILOutput, probabilities
from .encoders import ENCODERS, EncoderConfig, ResNetK
from .factory import ModelConfig, build_model
from .kinds import MODELS, ModelDims, ModelKind, Stage
from .pooling import POOLINGS, Pooling, PoolingConfig

__all__ = [
    "ENCODERS",
    "MODELS",
    "POOLINGS",
    "Bags",
    "EncoderConfig",
    "MILModel",
    "MILOutput",
    "ModelConfig",
    "ModelDims",
    "ModelKind",
    "Pooling",
    "PoolingConfig",
    "ResNetK",
    "Stage",
    "build_model",
    "probabilities",
]
