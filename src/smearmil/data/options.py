"""Options that say how to read a data set; validated, and loadable from a small YAML file."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..utils.config_files import parse_mapping
from ..utils.registry import registered_name
from .layouts import LAYOUTS


class DataOptions(BaseModel):
    """How to read a cohort. Every field has a default that fits the public data sets."""

    model_config = ConfigDict(extra="forbid")

    layout: Annotated[str, registered_name(LAYOUTS, "auto")] = Field("auto", description="a registered layout, or auto")
    csv: Path | None = Field(None, description="clinical table (default: found by the layout)")
    id_column: str | None = Field(None, description="patient-id column (patient-folder layout)")
    label_column: str | None = Field(None, description="label column (patient-folder layout)")
    attributes: list[str] | None = Field(None, description="attribute columns (default: numeric ones and gender)")
    class_names: list[str] | None = Field(
        None, description="class names; lymphocytosis: names of labels 0, 1, ... (default reactive, tumoral)"
    )
    reference_date: date = Field(date(2020, 1, 1), description="date at which ages are computed from DOB")
    missing_policy: Literal["error", "impute"] = Field(
        "impute", description="missing attribute values: error, or impute with the training median + indicator"
    )
    labels_required: bool = Field(
        True, description="a label column must exist (false when predicting new patients: labels then optional)"
    )
    drop_duplicate_images: bool = Field(True, description="drop images of a bag whose content repeats")
    check_images: bool = Field(True, description="decode every image to find unreadable and duplicate ones")

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"class names must be distinct, got {value}")
        return value

    def for_new_patients(self, class_names: list[str] | None = None) -> DataOptions:
        """How to read new patients for a model trained with these options: its classes, attributes, label
        column, reference date and missing-value policy, not its table or id column; labels optional."""
        keep = {"attributes", "label_column", "reference_date", "missing_policy"}
        return DataOptions.model_validate(
            {
                **self.model_dump(include=keep),
                "class_names": class_names or self.class_names,
                "labels_required": False,
            }
        )

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: object) -> DataOptions:
        """Options from a YAML mapping, with explicit overrides (e.g. from the command line) on top."""
        path = Path(path)
        raw = parse_mapping(path.read_text(encoding="utf-8"), str(path))
        if raw.get("csv") is not None and not Path(raw["csv"]).is_absolute():
            raw["csv"] = str(path.parent / raw["csv"])
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(raw)
