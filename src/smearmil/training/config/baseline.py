"""``kind: baseline``: one of the paper's baselines and what it sees."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...baselines.registry import BASELINES, accepted_data
from ...utils.registry import registered_name
from .run import MethodConfig


class FeatureSettings(BaseModel):
    """How the hand-crafted cell features of image baselines are computed."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(224, ge=8)
    crop: int | None = Field(None, ge=8)
    n_jobs: int = Field(2, ge=1)


class BaselineConfig(MethodConfig):
    """``kind: baseline``: a registered baseline, its parameters and what it sees (``inputs``)."""

    kind: Literal["baseline"] = "baseline"
    name: str = "baseline"
    baseline: Annotated[str, registered_name(BASELINES)]
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: str | None = Field(None, description="attrs, imgs or imgs+attrs (default: the baseline's first)")
    attributes: list[str] = Field(default_factory=lambda: ["age", "lymph_count"])
    log_attributes: list[str] = Field(default_factory=lambda: ["lymph_count"])
    features: FeatureSettings = FeatureSettings()

    @model_validator(mode="after")
    def _inputs(self) -> BaselineConfig:
        allowed = accepted_data(self.baseline)
        self.inputs = self.inputs or allowed[0]
        if self.inputs not in allowed:
            raise ValueError(f"{self.baseline} takes data {', '.join(allowed)}, not {self.inputs}")
        return self
