"""Late fusion of cached-feature experts (``kind: experts``): where the cells' features come from,
which image and attribute experts score a patient, and how their scores are fused.

An image expert is a MIL classifier over per-cell features (a registered baseline that takes ``imgs``,
e.g. ``mil/instance``, or ``head``: a MIL head of any pooling); an attribute expert is a registered
classifier on the clinical attributes (``clinical/gnb``, ``clinical/paper-mlp``, ...). Every choice a
fusion makes from data (its regularisation, its weights, its gate) is fitted on out-of-fold scores of
the training patients only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ...baselines.registry import ATTRS, BASELINES, IMGS, accepted_data
from ...utils.config_files import load_config_file
from ...utils.registry import Component, registered_name
from .components import CELL_SOURCES, FUSIONS
from .head import HeadConfig
from .run import THRESHOLD_HELP, MethodConfig, Strict, Threshold, threshold_rule

EXPERTS = "experts"
HEAD = "head"  # the image expert that is a MIL head (``training.heads``) rather than a baseline
ENSEMBLE = "ensemble"  # several experts of one kind, their log-probabilities averaged (params: members)


class FusionConfig(Component):
    registry = FUSIONS

    @property
    def label(self) -> str:
        """The name with the parameters that differ from their defaults, e.g. ``stack(balanced=True)``."""
        defaults = FUSIONS.params(self.name)().model_dump()
        args = ", ".join(f"{k}={v}" for k, v in (self.model_extra or {}).items() if defaults.get(k) != v)
        return f"{self.name}({args})" if args else self.name


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


class CellFeatures(Strict):
    """Per-cell features: ``handcrafted`` (the 94 of the paper's Section 3.2), ``ssl`` (an encoder
    pre-trained per fold on the training patients' cells, plus ``extra_data``), ``supervised`` (the
    image expert of a run config trained per fold on the training patients' labels), ``single-cell``
    (the ``ssl`` preset's encoder trained to tell cell types apart, on ``cell_labels`` or on the
    training patients' cell-type folders), ``encoder`` (a pre-trained encoder folder, used as is),
    ``random`` (the ``ssl`` preset's encoder with random weights) or ``features`` (features extracted
    beforehand): any source of ``training.cell_sources``."""

    source: Annotated[str, registered_name(CELL_SOURCES)] = "handcrafted"
    size: int = Field(224, ge=8, description="handcrafted: side the cells are resized to")
    crop: int | None = Field(None, ge=8, description="handcrafted: central crop after resizing")
    n_jobs: int = Field(2, ge=1, description="handcrafted: processes computing features")
    ssl: str | dict[str, Any] = Field(
        "cpu-ssl", description="ssl, random, single-cell: pre-training preset, YAML file, or the config itself"
    )
    ssl_epochs: int | None = Field(None, ge=1, description="ssl: epochs (default: the preset's)")
    extra_data: list[Path] = Field(
        default_factory=list, description="ssl: further data sets (e.g. unlabelled patients) whose cells it learns from"
    )
    test_cells: bool = Field(
        False, description="ssl: also learn from the test patients' cells (transductive; off by default)"
    )
    supervised: str | dict[str, Any] = Field(
        "cpu-cnn",
        description="supervised: run config (preset, YAML file or the config itself) whose image expert "
        "gives the features",
    )
    cell_labels: Path | None = Field(
        None,
        description="single-cell: a labelled single-cell data set (<class>/*.jpg, e.g. blood-cells-dev) whose "
        "cell types the encoder learns; without it, the training patients' cell-type folders",
    )
    cell_epochs: int | None = Field(None, ge=1, description="single-cell: epochs (default: the ssl preset's)")
    encoder: Path | None = Field(
        None,
        description="encoder: a `smearmil ssl pretrain` or `train` folder, or a shipped encoder's name; "
        "pretrained: a shipped encoder (default smearmil-cells-v1)",
    )
    features: Path | None = Field(
        None, description="features: a `smearmil features extract` folder (for CV on its patients)"
    )

    @model_validator(mode="after")
    def _encoder_given(self) -> CellFeatures:
        if self.source == "encoder" and self.encoder is None:
            raise ValueError("cells.source encoder needs cells.encoder (a pre-trained encoder folder)")
        if self.source == "pretrained":
            from ...models.shipped import DEFAULT_ENCODER, is_shipped, shipped_encoders

            name = str(self.encoder or DEFAULT_ENCODER)
            if not is_shipped(name) and not Path(name).is_dir():
                shipped = ", ".join(shipped_encoders()) or "none in this install"
                raise ValueError(f"cells.encoder {name}: no shipped encoder of that name (shipped: {shipped})")
        if self.source == "features" and self.features is None:
            raise ValueError("cells.source features needs cells.features (a `smearmil features extract` folder)")
        if self.source != "single-cell" and (self.cell_labels is not None or self.cell_epochs is not None):
            raise ValueError("cells.cell_labels and cells.cell_epochs are for cells.source single-cell")
        return self


class ExpertSpec(Strict):
    """A registered estimator (``mil/instance``, ``clinical/gnb``, ``head``, or an ``ensemble`` of
    ``members``) and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def label(self) -> str:
        """The name with its parameters, e.g. ``mil/instance(C=0.01)``; an ensemble's members by label."""
        if self.name == ENSEMBLE:
            return f"{self.name}({', '.join(m.label for m in self.members)})"
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name

    @model_validator(mode="after")
    def _ensemble_members(self) -> ExpertSpec:
        if self.name == ENSEMBLE:
            members = self.params.get("members")
            if set(self.params) != {"members"} or not isinstance(members, list) or not members:
                raise ValueError("an ensemble takes one parameter, members: a non-empty list of experts")
        return self

    @property
    def members(self) -> list[ExpertSpec]:
        """An ensemble's experts."""
        return [ExpertSpec.model_validate(m) for m in self.params.get("members", [])]

    @property
    def experts(self) -> list[ExpertSpec]:
        """The estimators it is made of: an ensemble's members, or itself."""
        return self.members if self.name == ENSEMBLE else [self]

    def takes(self, data: str) -> bool:
        if self.name == ENSEMBLE:
            return all(m.takes(data) for m in self.members)
        return (self.name == HEAD and data == IMGS) or (self.name in BASELINES and data in accepted_data(self.name))


class ExpertsConfig(MethodConfig):
    """``kind: experts``: an image expert, an attribute expert and a fusion, fitted together."""

    kind: Literal["experts"] = "experts"
    name: str = "experts"
    attributes: list[str] = Field(default_factory=lambda: ["age", "lymph_count"])
    log_attributes: list[str] = Field(default_factory=lambda: ["lymph_count"])
    cells: CellFeatures = CellFeatures()
    # each of these may be a list of candidates: each fold then picks one by inner CV on its training patients
    image_expert: ExpertSpec | list[ExpertSpec] | None = ExpertSpec(name="mil/instance", params={"C": 0.01})
    attribute_expert: ExpertSpec | list[ExpertSpec] | None = ExpertSpec(name="clinical/gnb")
    fusion: FusionConfig | list[FusionConfig] | None = None
    select_by: Literal["log_loss", "roc_auc", "balanced_accuracy"] = Field(
        "log_loss", description="how candidates are compared on the training patients' out-of-fold scores"
    )
    inner_folds: int = Field(5, ge=2, description="folds of the training patients that give out-of-fold scores")
    threshold: Threshold = Field("fixed", description=THRESHOLD_HELP)
    val: float = Field(0.15, ge=0, lt=1, description="validation share of training patients (supervised cells)")

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: str) -> str:
        return threshold_rule(v, ("fixed", "out_of_fold"), "experts")

    @model_validator(mode="after")
    def _consistent(self) -> ExpertsConfig:
        if not self.image_experts and not self.attribute_experts:
            raise ValueError("give an image_expert, an attribute_expert, or both")
        for spec in (e for s in self.image_experts for e in s.experts):
            if not spec.takes(IMGS):
                raise ValueError(f"image_expert {spec.name!r} does not take bags of cell features")
        for spec in (e for s in self.attribute_experts for e in s.experts):
            if not spec.takes(ATTRS):
                raise ValueError(f"attribute_expert {spec.name!r} does not take clinical attributes")
        both = bool(self.image_experts) and bool(self.attribute_experts)
        if both and not self.fusions:
            raise ValueError(f"two experts need a fusion: one of {FUSIONS.choices()}")
        if not both and self.fusions:
            raise ValueError("a fusion needs both an image_expert and an attribute_expert")
        for group in (self.image_experts, self.attribute_experts, self.fusions):
            labels = [c.label for c in group]
            if len(set(labels)) != len(labels):
                raise ValueError(f"candidates must differ: {labels}")
        return self

    def check_classes(self, n_classes: int) -> None:
        if self.threshold == "out_of_fold" and n_classes != 2:
            raise ValueError(f"threshold: out_of_fold needs two classes, not {n_classes}; use threshold: fixed")

    @property
    def image_experts(self) -> list[ExpertSpec]:
        return _as_list(self.image_expert)

    @property
    def attribute_experts(self) -> list[ExpertSpec]:
        return _as_list(self.attribute_expert)

    @property
    def fusions(self) -> list[FusionConfig]:
        return _as_list(self.fusion)

    @property
    def uses_images(self) -> bool:
        return bool(self.image_experts)


def load_experts_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ExpertsConfig:
    return load_config_file(name_or_path, ExpertsConfig, EXPERTS, overrides)


def head_on_cells(
    name: str, seed: int, cells: dict[str, Any], head: HeadConfig, data: dict[str, Any] | None = None
) -> ExpertsConfig:
    """An experts config with one image expert, a MIL head, on the cells' features of ``cells`` (a
    ``CellFeatures`` mapping): what ``features cv``, ``features train`` and ``ssl cv`` fit."""
    params = head.model_dump(mode="json", exclude={"kind", "name"})
    config: dict[str, Any] = {"name": name, "seed": seed, "cells": cells, "attribute_expert": None}
    config["image_expert"] = {"name": HEAD, "params": params}
    return ExpertsConfig.model_validate({**config, **({"data": data} if data is not None else {})})
