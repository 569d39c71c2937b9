"""What a config may name in the models layer, known without importing torch: the registries of
encoders, poolings and model kinds with their shipped entries declared, their parameters, and the
validated ``model`` section. The modules that define the entries are imported when one is built.

A new entry is its class (registered in its own module) and one ``declare`` line here."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..utils.registry import Component, Registry, checked_params, registered_name

IMAGES, ATTRIBUTES, FEATURES = "images", "attributes", "features"

ENCODERS: Registry[Any] = Registry("encoder")
POOLINGS: Registry[Any] = Registry("pooling")
MODELS: Registry[Any] = Registry("model kind")


class ResNet18Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding: Literal["gap", "flatten"] = Field("gap", description="global average pooling, or Table 1's flatten")


class ResNetKParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = Field(32, ge=1, description="width K of the first stage")
    blocks: int = Field(1, ge=1, description="residual blocks per stage (2 gives ResNet18's depth)")
    embedding: Literal["gap", "flatten"] = Field("gap", description="global average pooling, or Table 1's flatten")


class LSEParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: float = Field(1.0, gt=0, description="temperature: max as r grows, mean as r -> 0")


class AttentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(128, ge=1, description="attention hidden units")


class MLPParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mlp_hidden: int = Field(2, ge=1, description="hidden units of the MLP expert")


class AverageParams(MLPParams):
    average: Literal["scores", "probabilities"] = Field(
        "scores", description="average the experts' scores (the paper's Eq. 14), or their probabilities"
    )


class MixtureParams(MLPParams):
    paradigm: Literal["P1", "P2", "P3"] = Field("P1", description="P1 end to end, P2 gate only, P3 both")
    gate_projection: int = Field(8, ge=1, description="size of the pooled embedding's projection the gate sees")
    gate: Literal["projected", "paper"] = Field(
        "projected",
        description="paper: Eq. 15 as written (the embedding projected to one number, no biases); projected: "
        "to gate_projection numbers, with biases",
    )


ENCODERS.declare("resnetk", "smearmil.models.encoders", ResNetKParams)
ENCODERS.declare("resnet18", "smearmil.models.encoders", ResNet18Params)
for _pooling, _params in (("mean", None), ("max", None), ("lse", LSEParams)):
    POOLINGS.declare(_pooling, "smearmil.models.pooling", _params)
for _pooling in ("attention", "gated_attention"):
    POOLINGS.declare(_pooling, "smearmil.models.pooling", AttentionParams)
# stages: the names of the kind's training stages (``train.stages`` keys)
MODELS.declare("cnn", "smearmil.models.experts", stages=("cnn",))
MODELS.declare("mlp", "smearmil.models.experts", MLPParams, stages=("mlp",))
MODELS.declare("avg", "smearmil.models.fusion", AverageParams, stages=("cnn", "mlp"))
MODELS.declare("moe", "smearmil.models.fusion", MixtureParams, stages=("cnn", "mlp", "moe"))


class EncoderConfig(Component):
    """``{name: <encoder>, **its parameters, init: <ssl folder>}``, e.g. ``{name: resnetk, k: 8}``."""

    registry: ClassVar[Registry[Any]] = ENCODERS
    name: str = "resnetk"
    init: str | None = Field(
        None,
        description="folder of `smearmil ssl pretrain`: start from its encoder's weights "
        "and fine-tune them end to end inside the MIL model (`smearmil train` and `cv`)",
    )

    def build(self, input_size: int) -> Any:
        """The encoder module (an ``nn.Module`` with ``out_dim``)."""
        return ENCODERS.get(self.name)(self.params, input_size)


class PoolingConfig(Component):
    """``{name: <pooling>, **its parameters}``, e.g. ``{name: lse, r: 5}``."""

    registry: ClassVar[Registry[Any]] = POOLINGS

    def build(self, in_dim: int) -> Any:
        """The pooling module."""
        return POOLINGS.get(self.name)(in_dim, self.params)


def stage_names(kind: str) -> tuple[str, ...]:
    """The training stages of a model kind (from its declaration, or its class when registered later)."""
    declared = MODELS.info(kind).get("stages")
    return tuple(declared) if declared is not None else tuple(MODELS.get(kind).stage_names)


def all_stage_names() -> set[str]:
    return {name for kind in MODELS.names() for name in stage_names(kind)}


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
        return bool(MODELS.get(self.kind).uses(IMAGES))

    @property
    def uses_attributes(self) -> bool:
        return bool(MODELS.get(self.kind).uses(ATTRIBUTES))
