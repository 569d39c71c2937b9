"""Models layer: encoders, bag poolings, experts and their fusion, each kind behind a registry.

Every module here is imported on start, so whatever it registers (a model kind, an encoder, a
pooling) can be named in a config.
"""

from ..utils.registry import import_modules
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

import_modules(__name__, __path__)
