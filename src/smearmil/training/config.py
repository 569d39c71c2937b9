"""The validated run configuration (data, images, model, training, split) and its presets.

A preset is either a YAML file shipped in ``smearmil/configs`` (the CPU presets) or a name of the
paper's rows: ``cnn-<pool>-k<K>``, ``avg-<pool>-k<K>``, ``moe-p<1|2|3>[-<pool>]-k<K>``, ``mlp``,
with pool one of max, mean, lse (or lse<r>, e.g. lse5), attention, gated-attention.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..data.images import Preprocessing
from ..data.options import DataOptions
from ..models.config import ModelConfig

STAGES = ("cnn", "mlp", "moe", "avg")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageConfig(Strict):
    size: int = Field(224, ge=8, description="side the cells are resized to")
    crop: int | None = Field(None, ge=8, description="keep the central CROP pixels after resizing")

    @property
    def input_size(self) -> int:
        return self.crop or self.size

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.size, self.crop)


class AugmentConfig(Strict):
    flips: bool = True
    rot90: bool = True
    pca_colour_std: float = Field(0.1, ge=0, description="std of alpha in PCA colour augmentation (0: off)")


class StageConfig(Strict):
    """Per-stage overrides (e.g. the MLP expert trains longer with a larger learning rate)."""

    epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    lr_steps: list[int] | None = None
    bags_per_batch: int | None = Field(None, ge=1)


class TrainConfig(Strict):
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(5e-4, ge=0)
    lr_steps: list[int] = Field(default_factory=list, description="epochs at which the learning rate is multiplied by lr_gamma")
    lr_gamma: float = Field(0.1, gt=0)
    bags_per_batch: int = Field(4, ge=1)
    max_cells_per_bag: int | None = Field(None, ge=1, description="cap on cells drawn per bag in training (memory)")
    augment: AugmentConfig = AugmentConfig()
    mean_centring: bool = True
    balance: Literal["none", "weights", "sampler"] = "weights"
    select_metric: Literal["balanced_accuracy", "roc_auc", "macro_f1", "loss", "last"] = "loss"
    threshold: Literal["fixed", "validation"] = "fixed"
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_workers: int = Field(0, ge=0)
    stages: dict[str, StageConfig] = Field(default_factory=dict)

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: dict[str, StageConfig]) -> dict[str, StageConfig]:
        unknown = set(v) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
        return v

    def for_stage(self, stage: str) -> TrainConfig:
        """This config with the overrides of ``stage`` applied."""
        overrides = self.stages.get(stage)
        if overrides is None:
            return self
        return self.model_copy(update={k: v for k, v in overrides.model_dump().items() if v is not None})


class SplitConfig(Strict):
    scheme: Literal["holdout", "kfold", "repeated-kfold"] = "kfold"
    folds: int = Field(5, ge=2)
    repeats: int = Field(3, ge=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)


class RunConfig(Strict):
    name: str = "custom"
    seed: int = 0
    data: DataOptions = DataOptions()
    image: ImageConfig = ImageConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    split: SplitConfig = SplitConfig()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


_PAPER = re.compile(r"^(?P<kind>cnn|avg|moe-p(?P<paradigm>[123]))(?:-(?P<pool>max|mean|lse(?P<r>\d+(?:\.\d+)?)?|attention|gated-attention))?-k(?P<k>\d+)$")
PAPER_TRAINING: dict[str, Any] = {"epochs": 100, "lr_steps": [60, 85], "bags_per_batch": 4,
                                  "stages": {"mlp": {"epochs": 400, "lr": 0.01, "bags_per_batch": 32, "lr_steps": []}}}


def paper_preset(name: str) -> dict[str, Any] | None:
    """The config of one of the paper's rows, from its name; None if the name is not of that form."""
    if name == "mlp":
        # no class weighting: on lymphocytosis-dev it moves the boundary off (balanced accuracy 0.91 vs 0.95)
        return {"name": name, "model": {"kind": "mlp"}, "train": {**PAPER_TRAINING, "epochs": 400, "lr": 0.01,
                                                                   "bags_per_batch": 32, "lr_steps": [],
                                                                   "balance": "none"}}
    m = _PAPER.match(name)
    if not m:
        return None
    pool = (m["pool"] or "mean").replace("-", "_")
    pooling: dict[str, Any] = {"name": "lse" if pool.startswith("lse") else pool}
    if m["r"]:
        pooling["r"] = float(m["r"])
    model: dict[str, Any] = {"kind": m["kind"][:3], "encoder": {"k": int(m["k"])}, "pooling": pooling}
    if m["paradigm"]:
        model["paradigm"] = f"P{m['paradigm']}"
    return {"name": name, "model": model, "train": PAPER_TRAINING}


def merge_dicts(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Nested update: ``top`` wins, mappings are merged key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merge_dicts(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def shipped_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("smearmil.configs").iterdir() if p.name.endswith(".yaml"))


def read_yaml_config(name_or_path: str) -> tuple[dict[str, Any], str]:
    """The mapping in a YAML file or shipped preset, and where it came from."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif name_or_path in shipped_presets():
        text = resources.files("smearmil.configs").joinpath(f"{name_or_path}.yaml").read_text(encoding="utf-8")
        where = f"preset {name_or_path}"
    else:
        raise ValueError(f"no config file or preset named {name_or_path!r}; presets: {', '.join(shipped_presets())}")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a config must be a mapping")
    return raw, where


def _raw(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name_or_path in seen:
        raise ValueError(f"config {name_or_path!r} includes itself through 'base'")
    path = Path(name_or_path)
    if (path.suffix in (".yaml", ".yml") and path.is_file()) or name_or_path in shipped_presets():
        raw, where = read_yaml_config(name_or_path)
    elif (paper := paper_preset(name_or_path)) is not None:
        return paper
    else:
        raise ValueError(
            f"no config file or preset named {name_or_path!r}; presets: {', '.join(shipped_presets())}, "
            "or a paper row such as cnn-mean-k32, cnn-lse-k64, avg-mean-k32, moe-p1-k64, moe-p2-k32, mlp"
        )
    if raw.get("kind") == "compare":
        raise ValueError(f"{where} is a comparison config: use it with `smearmil compare`")
    if raw.get("kind") == "ssl":
        raise ValueError(f"{where} is a pre-training config: use it with `smearmil ssl pretrain`")
    base = raw.pop("base", None)
    own_name = raw.pop("name", None) or (path.stem if path.suffix else name_or_path)
    if base:
        raw = merge_dicts(_raw(str(base), (*seen, name_or_path)), raw)
    raw["name"] = own_name
    return raw


def load_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A RunConfig from a YAML file or preset name, with nested overrides on top; clear errors."""
    raw = merge_dicts(_raw(name_or_path), overrides or {})
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ValueError(f"config {name_or_path!r} is not valid:\n" + "\n".join(lines)) from None
