"""``kind: compare``: methods (configs of any method, or baselines) compared on identical folds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...baselines.registry import accepted_data
from ...data.options import DataOptions
from ...utils.paths import safe_name
from .baseline import FeatureSettings


class MethodSpec(BaseModel):
    """A method's config (``config``: preset or YAML of any registered kind) or a baseline (``baseline``:
    registry name, its ``params`` and what it sees, ``data``)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    config: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    baseline: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    data: str | None = Field(None, description="what the method sees: imgs, attrs, imgs+attrs (default: its own)")

    @model_validator(mode="after")
    def _one_kind(self) -> MethodSpec:
        if (self.config is None) == (self.baseline is None):
            raise ValueError(f"method {self.name!r}: give exactly one of config (a method's config) or baseline")
        if self.baseline is not None:
            allowed = accepted_data(self.baseline)
            self.data = self.data or allowed[0]
            if self.data not in allowed:
                raise ValueError(
                    f"method {self.name!r}: {self.baseline} takes data {', '.join(allowed)}, not {self.data}"
                )
        return self

    @property
    def label(self) -> str:
        """The name, with the data when the same baseline can be given several kinds of data, the cap
        when a classical MIL method trains on at most N cells per bag (the paper uses every cell), and
        "calibrated" when its probabilities are Platt-scaled (the paper cuts its uncalibrated scores at 0.5)."""
        several = self.baseline is not None and len(accepted_data(self.baseline)) > 1
        cap = self.params.get("max_instances")
        capped = f", at most {cap} cells per bag" if cap is not None else ""
        calibrated = ", calibrated" if self.params.get("calibrate") else ""
        return f"{self.name} [{self.data}{capped}{calibrated}]" if several else self.name


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["compare"] = "compare"
    name: str = "compare"
    data: DataOptions = DataOptions()
    attributes: list[str] = Field(default_factory=lambda: ["age", "lymph_count"])
    log_attributes: list[str] = Field(default_factory=lambda: ["lymph_count"])
    val: float = Field(0.15, ge=0, lt=1, description="validation share of each fold's training patients (deep models)")
    features: FeatureSettings = FeatureSettings()
    methods: list[MethodSpec]

    @model_validator(mode="after")
    def _distinct(self) -> CompareConfig:
        labels = [m.label for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method names must be distinct (with their data): {labels}")
        self.folders  # noqa: B018 - every name must make a folder name (a clear error now, before any work)
        return self

    @property
    def folders(self) -> dict[str, str]:
        """Each method's folder under ``methods/``: its name made safe for a file system, distinct even where
        names differ only by case or by ``/`` and ``-`` (``MI-SVM`` and ``mi-SVM``: one folder on macOS and
        Windows disks), the later one numbered in the config's order."""
        found: dict[str, str] = {}
        taken: set[str] = set()
        for label in (m.label for m in self.methods):
            base = method_folder_name(label)
            name, k = base, 1
            while name.lower() in taken:
                k += 1
                name = f"{base}-{k}"
            taken.add(name.lower())
            found[label] = name
        return found


def method_folder_name(label: str) -> str:
    """The folder a comparison writes one method's CV into (``methods/<name>``)."""
    return safe_name(label.replace("/", "-").replace(" ", "_"), "method name")
