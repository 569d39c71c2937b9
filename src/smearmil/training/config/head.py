"""``kind: head``: a MIL head on cached cell features (``smearmil features cv|train --head``, the ``head``
image expert of an experts config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from ...models.specs import POOLINGS, PoolingConfig
from ...utils.config_files import load_config_file
from .run import Strict


class HeadConfig(Strict):
    """A MIL head on cached features (``kind: head`` in a YAML file)."""

    kind: Literal["head"] = "head"
    name: str = "head"
    pooling: PoolingConfig = PoolingConfig(name="attention", hidden=64)
    embed_dim: int = Field(64, ge=1)
    # heads are small: a pooling that has these parameters gets these defaults here
    small_pooling: ClassVar[dict[str, Any]] = {"hidden": 64}
    dropout: float = Field(0.25, ge=0, lt=1)
    epochs: int = Field(40, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: training bags / bags_per_batch")
    bags_per_batch: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    balance: Literal["sampler", "weights", "none"] = "sampler"
    max_cells_per_bag: int | None = Field(512, ge=1)

    @field_validator("pooling", mode="before")
    @classmethod
    def _small_defaults(cls, value: Any) -> Any:
        section = {"name": value} if isinstance(value, str) else value
        if not isinstance(section, dict) or section.get("name") not in POOLINGS:
            return value
        declared = POOLINGS.params(section["name"]).model_fields
        return {**{k: v for k, v in cls.small_pooling.items() if k in declared}, **section}


def load_head_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> HeadConfig:
    """A head config from a YAML file (``kind: head``), or from the name of a registered pooling."""
    if str(name_or_path) in POOLINGS:
        return HeadConfig.model_validate({"pooling": str(name_or_path), **(overrides or {})})
    return load_config_file(name_or_path, HeadConfig, "head", overrides)
