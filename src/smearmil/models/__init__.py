"""Models layer: encoders, bag poolings, experts and their fusion, each kind behind a registry.

The registries and the ``model`` config section live in ``models.specs``, which imports no torch: the
shipped entries are declared there and their modules load when an entry is built. The names below
are imported on first use.
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

if TYPE_CHECKING:
    from .base import Bags, MILModel, MILOutput, probabilities
    from .encoders import ResNetK
    from .factory import build_model
    from .kinds import ModelDims, ModelKind, Stage
    from .pooling import Pooling
    from .specs import ENCODERS, MODELS, POOLINGS, EncoderConfig, ModelConfig, PoolingConfig

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
_HOMES = {"Bags": ".base", "MILModel": ".base", "MILOutput": ".base", "probabilities": ".base", "ResNetK": ".encoders"}
_HOMES |= {
    "build_model": ".factory",
    "ModelDims": ".kinds",
    "ModelKind": ".kinds",
    "Stage": ".kinds",
    "Pooling": ".pooling",
}
_HOMES |= {
    name: ".specs" for name in ("ENCODERS", "MODELS", "POOLINGS", "EncoderConfig", "ModelConfig", "PoolingConfig")
}
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
