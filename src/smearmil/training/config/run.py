"""The validated run configuration (data, images, model, training, split) and its presets.

A preset is either a YAML file shipped in ``smearmil/configs`` (the CPU presets) or a name of the
paper's rows: ``cnn-<pool>-k<K>``, ``avg-<pool>-k<K>``, ``moe-p<1|2|3>[-<pool>]-k<K>``, ``mlp``,
with pool one of max, mean, lse (or lse<r>, e.g. lse5), attention, gated-attention.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...data.images import Preprocessing
from ...data.options import DataOptions
from ...models.specs import ModelConfig, all_stage_names
from ...utils.config_files import RUN, dump_yaml, load_config_file

RUN_FLAG_PATHS = {k: f"train.{k}" for k in ("epochs", "accelerator", "devices", "precision", "strategy")}
PAPER_HINT = ", or a paper row such as cnn-mean-k32, cnn-lse-k64, avg-mean-k32, moe-p1-k64, moe-p2-k32, mlp"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The decision rule on P(class 1) for two classes, one meaning wherever a config has it: ``fixed`` cuts at 0.5,
# ``validation`` where the validation patients' balanced accuracy is highest, ``out_of_fold`` where the
# training patients' out-of-fold scores' balanced accuracy is highest. Each kind of config says which it can do.
Threshold = Literal["fixed", "validation", "out_of_fold"]
THRESHOLD_HELP = (
    "two classes: cut P(class 1) at 0.5 (fixed), or where the balanced accuracy of the validation patients "
    "(validation) or of the training patients' out-of-fold scores (out_of_fold) is highest"
)


def threshold_rule(value: str, allowed: tuple[str, ...], kind: str) -> str:
    """``value`` if a ``kind`` config can choose its cut that way, else an error naming the ones it can."""
    if value not in allowed:
        raise ValueError(f"threshold {value!r}: {kind} configs choose their cut by {' or '.join(allowed)}")
    return value


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
    pca_colour_scale: Literal["eigenvalue", "sqrt_eigenvalue"] = Field(
        "sqrt_eigenvalue",
        description="shift sum_i e_i alpha_i lambda_i (the paper's Eq. 19), or alpha_i sqrt(lambda_i) (AlexNet's "
        "practice, a standard deviation per component)",
    )


class StageConfig(Strict):
    """Per-stage overrides (e.g. the MLP expert trains longer with a larger learning rate)."""

    epochs: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=0)
    lr_step_every: int | None = Field(None, ge=0)
    val_every_steps: int | None = Field(None, ge=0)
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    lr_steps: list[int] | None = None
    bags_per_batch: int | None = Field(None, ge=1)


class TrainConfig(Strict):
    """How a deep model trains (``train`` section); its threshold is fixed or chosen on validation patients."""

    epochs: int = Field(30, ge=1)
    max_steps: int = Field(
        0,
        ge=0,
        description="train for this many iterations (optimizer steps, rounded up to whole epochs) instead of "
        "`epochs`; 0: by epochs",
    )
    lr_step_every: int = Field(
        0, ge=0, description="multiply the learning rate by lr_gamma every this many iterations (0: off)"
    )
    val_every_steps: int = Field(0, ge=0, description="validate every this many iterations (0: every epoch)")
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(5e-4, ge=0)
    lr_steps: list[int] = Field(
        default_factory=list, description="epochs at which the learning rate is multiplied by lr_gamma"
    )
    lr_gamma: float = Field(0.1, gt=0)
    bags_per_batch: int = Field(4, ge=1)
    max_cells_per_bag: int | None = Field(None, ge=1, description="cap on cells drawn per bag in training (memory)")
    augment: AugmentConfig = AugmentConfig()
    mean_centring: bool = True
    balance: Literal["none", "weights", "sampler"] = "weights"
    channels_last: bool = Field(
        False,
        description="convolve in the channels-last layout: faster oneDNN kernels (1.3x on the paper's model), "
        "equal steps within float rounding, but a long run then ends elsewhere than an NCHW run of the same seed",
    )
    select_metric: Literal["balanced_accuracy", "roc_auc", "macro_f1", "loss", "last"] = "loss"
    threshold: Threshold = Field("fixed", description=THRESHOLD_HELP)
    precision: Literal["auto", "32-true", "16-mixed", "bf16-mixed"] = "auto"
    accelerator: str = "auto"
    devices: int | str = Field(1, description="devices (one process each with strategy ddp); auto: every GPU")
    strategy: str = Field("auto", description="Lightning strategy; ddp: one process per device (gloo on CPU)")
    num_nodes: int = Field(1, ge=1, description="hosts of a DDP run (e.g. SLURM --nodes)")
    num_workers: int = Field(0, ge=0)
    stages: dict[str, StageConfig] = Field(default_factory=dict)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: str) -> str:
        return threshold_rule(v, ("fixed", "validation"), "run")

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: dict[str, StageConfig]) -> dict[str, StageConfig]:
        known = all_stage_names()
        unknown = set(v) - known
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {sorted(known)}")
        return v

    def for_stage(self, stage: str) -> TrainConfig:
        """This config with the overrides of ``stage`` applied."""
        overrides = self.stages.get(stage)
        if overrides is None:
            return self
        update = {k: v for k, v in overrides.model_dump().items() if v is not None}
        if "epochs" in update and "max_steps" not in update:
            update["max_steps"] = 0  # a stage given epochs trains by epochs
        return self.model_copy(update=update)


class SplitConfig(Strict):
    scheme: Literal["holdout", "kfold", "repeated-kfold"] = "kfold"
    folds: int = Field(5, ge=2)
    repeats: int = Field(3, ge=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)


class MethodConfig(Strict):
    """What every method's config has: a name, notes on its source, a seed and how its cohorts are read."""

    name: str = "custom"
    notes: str = Field("", description="what the config follows and why (a preset's source)")
    seed: int = 0
    data: DataOptions = DataOptions()

    def to_yaml(self) -> str:
        return dump_yaml(self)


class RunConfig(MethodConfig):
    """``kind: run`` (or no kind): a deep MIL model trained end to end."""

    image: ImageConfig = ImageConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    split: SplitConfig = SplitConfig()


_PAPER = re.compile(
    r"^(?P<kind>cnn|avg|moe-p(?P<paradigm>[123]))(?:-(?P<pool>max|mean|lse(?P<r>\d+(?:\.\d+)?)?|attention|gated-attention))?-k(?P<k>\d+)$"
)
PAPER = "Sahasrabudhe et al. 2021, Deep multi-instance learning using multi-modal data for diagnosis of lymphocytosis"
PAPER_NOTES = (
    f"{PAPER}. Table 1: ResNet-K ending with a flatten of the 7x7x8K map, 224 px cells. Section 2.5: Adam, "
    "learning rate 1e-4 multiplied by 0.1 every 96,000 iterations, 220,000 iterations, the best model on the "
    "validation patients, unweighted negative log-likelihood, whole bags, per-pixel mean centring over the "
    "training cells. Eq. 14: AVG averages the experts' scores. Eq. 15: the gate sees theta_A . p (one "
    "number) and the attributes, without biases. Eq. 19: PCA colour shift sum_i e_i alpha_i "
    "lambda_i, on pixels in [0, 1], where the eigenvalues are small and so is the shift (the sqrt_eigenvalue "
    "option is AlexNet's practice). Chosen here, the paper being silent: validation every 1,000 iterations "
    "(rounded to whole epochs), 4 bags per iteration, weight decay 5e-4, alpha std 0.1."
)
PAPER_TRAINING: dict[str, Any] = {
    "epochs": 1_000_000,  # a bound only: the schedule is in iterations
    "max_steps": 220_000,
    "lr": 1e-4,
    "lr_gamma": 0.1,
    "lr_step_every": 96_000,
    "lr_steps": [],
    "val_every_steps": 1_000,
    "select_metric": "loss",
    "balance": "none",
    "bags_per_batch": 4,
    "max_cells_per_bag": None,
    "mean_centring": True,
    "augment": {"pca_colour_scale": "eigenvalue"},
}
PAPER_IMAGE: dict[str, Any] = {"size": 224, "crop": None}


PAPER_ROWS = (
    ("cnn-{max,mean,lse}-k{8,16,32,64}", "the CNN expert alone (images), Table 2 and 3: pooling x width K"),
    ("avg-{max,mean,lse}-k{8,16,32,64}", "CNN and MLP trained apart, their scores averaged (Eq. 14), Table 2"),
    ("moe-p1-k{8,16,32,64}", "mixture of experts trained end to end (P1), mean pooling, Table 2 and 3"),
    ("moe-p2-k{32,64}", "mixture of experts: experts alone, then the gate only (P2), Table 3"),
    ("moe-p3-k{32,64}", "mixture of experts: experts alone, then all of it (P3), Table 3"),
    ("mlp", "the attribute expert (age, lymphocyte count), Table 3"),
)


def paper_row_names(pattern: str) -> list[str]:
    """The names a ``PAPER_ROWS`` pattern stands for, e.g. ``moe-p2-k{32,64}`` -> moe-p2-k32, moe-p2-k64."""
    names = [""]
    for part in re.split(r"(\{[^}]*\})", pattern):
        options = part[1:-1].split(",") if part.startswith("{") else [part]
        names = [n + o for n in names for o in options]
    return names


def paper_preset(name: str) -> dict[str, Any] | None:
    """The config of one of the paper's rows, from its name; None if the name is not of that form.
    Every row follows the paper as written (``PAPER_NOTES``; ``--print-config`` shows them)."""
    base = {"name": name, "notes": PAPER_NOTES, "image": PAPER_IMAGE, "train": PAPER_TRAINING}
    if name == "mlp":
        return {**base, "model": {"kind": "mlp"}}
    m = _PAPER.match(name)
    if not m:
        return None
    pool = (m["pool"] or "mean").replace("-", "_")
    pooling: dict[str, Any] = {"name": "lse" if pool.startswith("lse") else pool}
    if m["r"]:
        pooling["r"] = float(m["r"])
    encoder = {"name": "resnetk", "k": int(m["k"]), "embedding": "flatten"}
    model: dict[str, Any] = {"kind": m["kind"][:3], "encoder": encoder, "pooling": pooling}
    if m["kind"] == "avg":
        model["average"] = "scores"  # Eq. 14
    if m["paradigm"]:
        model["paradigm"] = f"P{m['paradigm']}"
        model["gate"] = "paper"  # Eq. 15
    return {**base, "model": model}


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A RunConfig from a YAML file, shipped preset or paper row, with nested overrides on top; clear errors."""
    return load_config_file(name_or_path, RunConfig, RUN, overrides, paper_preset, PAPER_HINT)
