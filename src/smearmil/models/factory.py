"""The validated model configuration and ``build_model``, which builds any registered kind from it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..utils.registry import registered_name
from .base import ATTRIBUTES, IMAGES, MILModel
from .encoders import EncoderConfig
from .kinds import MODELS, ModelDims, kind_of
from .pooling import PoolingConfig


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Annotated[str, registered_name(MODELS)] = "cnn"
    encoder: EncoderConfig = EncoderConfig()
    pooling: PoolingConfig = PoolingConfig(name="mean")
    dropout: float = Field(0.0, ge=0, lt=1)
    attributes: list[str] = Field(default_factory=lambda: ["age", "lymph_count"])
    log_attributes: list[str] = Field(default_factory=lambda: ["lymph_count"])
    mlp_hidden: int = Field(2, ge=1)
    paradigm: Literal["P1", "P2", "P3"] = Field("P1", description="MOE: P1 end to end, P2 gate only, P3 both")
    gate_projection: int = Field(8, ge=1)

    @property
    def uses_images(self) -> bool:
        return MODELS.get(self.kind).uses(IMAGES)

    @property
    def uses_attributes(self) -> bool:
        return MODELS.get(self.kind).uses(ATTRIBUTES)


def build_model(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    """The whole model of ``config.kind`` with fresh weights (no pre-trained initialisation)."""
    return kind_of(config).build(config, ModelDims(n_classes, n_attributes, input_size))
