"""The validated model configuration and ``build_model``, which builds any registered kind from it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..utils.registry import checked_params, registered_name
from .base import ATTRIBUTES, IMAGES, MILModel
from .encoders import EncoderConfig
from .kinds import MODELS, ModelDims, kind_of
from .pooling import PoolingConfig


class ModelConfig(BaseModel):
    """The ``model`` section: its kind, the image expert's encoder and pooling, the attributes, and the
    settings the kind itself declares (e.g. ``paradigm`` for ``moe``), validated against the kind."""

    model_config = ConfigDict(extra="allow")
    kind: Annotated[str, registered_name(MODELS)] = "cnn"
    encoder: EncoderConfig = EncoderConfig()
    pooling: PoolingConfig = PoolingConfig(name="mean")
    dropout: float = Field(0.0, ge=0, lt=1)
    attributes: list[str] = Field(default_factory=lambda: ["age", "lymph_count"])
    log_attributes: list[str] = Field(default_factory=lambda: ["lymph_count"])

    @model_validator(mode="after")
    def _kind_params(self) -> ModelConfig:
        self.__pydantic_extra__ = checked_params(MODELS, self.kind, self.model_extra or {})
        return self

    @property
    def params(self) -> Any:
        """The settings of the model kind (an instance of its ``Params``)."""
        return MODELS.params(self.kind).model_validate(self.model_extra or {})

    @property
    def uses_images(self) -> bool:
        return MODELS.get(self.kind).uses(IMAGES)

    @property
    def uses_attributes(self) -> bool:
        return MODELS.get(self.kind).uses(ATTRIBUTES)


def build_model(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    """The whole model of ``config.kind`` with fresh weights (no pre-trained initialisation)."""
    return kind_of(config).build(config, ModelDims(n_classes, n_attributes, input_size))
