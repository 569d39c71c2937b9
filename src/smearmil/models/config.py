"""Validated model configuration and the model registry that builds from it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .base import MILModel
from .encoders import ENCODERS
from .experts import CNNModel, MLPModel
from .fusion import AverageModel, MixtureOfExperts
from .pooling import POOLINGS
from .registry import Registry

MODELS: Registry[MILModel] = Registry("model")


def registered_name(registry: Registry) -> AfterValidator:
    """A pydantic validator that accepts only names registered in ``registry``."""

    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {registry.kind} {name!r}; choose one of {registry.names()}")
        return name

    return AfterValidator(check)


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, registered_name(ENCODERS)] = "resnetk"
    k: int = Field(32, ge=1, description="width K of the first stage")
    blocks: int = Field(1, ge=1, description="residual blocks per stage (2 gives ResNet18's depth)")
    embedding: Literal["gap", "flatten"] = "gap"
    init: str | None = Field(None, description="folder of `smearmil ssl pretrain`: start from its encoder's weights "
                             "and fine-tune them end to end inside the MIL model (`smearmil train` and `cv`)")


class PoolingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, registered_name(POOLINGS)] = "mean"
    r: float = Field(1.0, gt=0, description="log-sum-exp temperature")
    hidden: int = Field(128, ge=1, description="attention hidden units")


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["cnn", "mlp", "avg", "moe"] = "cnn"
    encoder: EncoderConfig = EncoderConfig()
    pooling: PoolingConfig = PoolingConfig()
    dropout: float = Field(0.0, ge=0, lt=1)
    attributes: list[str] = Field(default_factory=lambda: ["age", "lymph_count"])
    log_attributes: list[str] = Field(default_factory=lambda: ["lymph_count"])
    mlp_hidden: int = Field(2, ge=1)
    paradigm: Literal["P1", "P2", "P3"] = Field("P1", description="MOE: P1 end to end, P2 gate only, P3 both")
    gate_projection: int = Field(8, ge=1)

    @property
    def uses_images(self) -> bool:
        return self.kind != "mlp"

    @property
    def uses_attributes(self) -> bool:
        return self.kind != "cnn"


def build_cnn(config: ModelConfig, n_classes: int, input_size: int) -> CNNModel:
    e = config.encoder
    encoder = ENCODERS.build(e.name, k=e.k, blocks=e.blocks, embedding=e.embedding, input_size=input_size)
    pooling_args = {"r": config.pooling.r, "hidden": config.pooling.hidden}
    return CNNModel(encoder, config.pooling.name, n_classes, pooling_args, config.dropout)


@MODELS.register("cnn")
def _cnn(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    return build_cnn(config, n_classes, input_size)


@MODELS.register("mlp")
def _mlp(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    return MLPModel(n_attributes, n_classes, config.mlp_hidden)


@MODELS.register("avg")
def _avg(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    return AverageModel(build_cnn(config, n_classes, input_size), MLPModel(n_attributes, n_classes, config.mlp_hidden))


@MODELS.register("moe")
def _moe(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    cnn, mlp = build_cnn(config, n_classes, input_size), MLPModel(n_attributes, n_classes, config.mlp_hidden)
    return MixtureOfExperts(cnn, mlp, n_attributes, config.gate_projection, freeze_experts=config.paradigm == "P2")


def build_model(config: ModelConfig, n_classes: int, n_attributes: int, input_size: int) -> MILModel:
    return MODELS.build(config.kind, config=config, n_classes=n_classes, n_attributes=n_attributes,
                        input_size=input_size)
