"""What an experts or SSL config may name in the training layer, known without importing torch or
scikit-learn: the registries of cell feature sources, late fusions and SSL methods, their shipped
entries declared with their parameters. An entry's module loads when the entry is used.

A new entry is its class or factory (registered in its own module) and one ``declare`` line here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...utils.registry import Registry

CELL_SOURCES: Registry[Any] = Registry("cell feature source")
FUSIONS: Registry[Any] = Registry("fusion")
SSL_METHODS: Registry[Any] = Registry("SSL method")


class StackParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attributes: bool = Field(True, description="the attributes as further inputs beside the experts' scores")
    Cs: list[float] = Field([0.01, 0.1, 1.0, 10.0], min_length=1, description="penalties tried by inner CV")
    balanced: bool = Field(False, description="weight the classes equally")


class GateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paradigm: str = Field("P2", pattern="^P2$", description="P2: experts trained alone, then the gate")
    projection: int = Field(8, ge=1, description="size of the projection of the mean cell feature")
    steps: int = Field(300, ge=1)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.01, ge=0)


class SimCLRParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.2, gt=0)
    hidden: int = Field(256, ge=1)
    out_dim: int = Field(64, ge=1)


class SwAVParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.1, gt=0)
    epsilon: float = Field(0.05, gt=0)
    sinkhorn_iterations: int = Field(3, ge=1)
    prototypes: int = Field(32, ge=2)
    hidden: int = Field(256, ge=1)
    out_dim: int = Field(64, ge=1)
    queue_length: int = Field(0, ge=0, description="embeddings of earlier batches used for the codes (0: off)")
    queue_start_epoch: int = Field(2, ge=0)
    freeze_prototypes_epochs: int = Field(1, ge=0)


class DINOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_dim: int = Field(256, ge=2)
    hidden: int = Field(256, ge=1)
    bottleneck: int = Field(64, ge=1)
    student_temperature: float = Field(0.1, gt=0)
    teacher_temperature: float = Field(0.04, gt=0)
    teacher_momentum: float = Field(0.996, ge=0, le=1, description="EMA momentum at the start (cosine to 1)")
    center_momentum: float = Field(0.9, ge=0, le=1)


# the encoders an SSL comparison puts beside the SSL methods (cell sources that are not pre-trainings)
BASELINE_ENCODERS = ("random", "supervised", "single-cell")
for _source in ("handcrafted", "encoder", "pretrained", "random", "ssl", "supervised", "single-cell", "features"):
    CELL_SOURCES.declare(_source, "smearmil.training.cell_sources")
for _fusion, _params in (("avg", None), ("attributes-only", None), ("image-only", None)):
    FUSIONS.declare(_fusion, "smearmil.training.late_fusion", _params)
FUSIONS.declare("stack", "smearmil.training.late_fusion", StackParams)
FUSIONS.declare("moe", "smearmil.training.late_fusion", GateParams)
SSL_METHODS.declare("simclr", "smearmil.training.ssl.simclr", SimCLRParams)
SSL_METHODS.declare("swav", "smearmil.training.ssl.swav", SwAVParams)
SSL_METHODS.declare("dino", "smearmil.training.ssl.dino", DINOParams)
