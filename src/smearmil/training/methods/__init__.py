"""One interface for every method a config or a comparison row names.

A method is registered in ``METHODS`` under the ``kind`` its configs declare (``run``: deep MIL,
``experts``: experts on cell features and attributes with their fusion, ``baseline``: a clinical
classifier or classical MIL). ``fit(cohort, fold, folder, settings)`` learns from the fold's training
(and validation) patients only and returns a :class:`~smearmil.training.predictor.Predictor`, which
predicts any patients, explains their cells, saves and loads. ``cv``, ``compare``, ``train``,
``predict``, ``evaluate``, ``repeatability``, ``report`` and ``reproduce`` all go through it, so a new
method is one new file in this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from ...data.cohort import Cohort
from ...data.splits import Fold
from ...utils.config_files import (
    RUN,
    config_kind,
    dump_yaml,
    is_config_file,
    load_config_file,
    shipped_presets,
    unknown_config,
)
from ...utils.registry import Registry
from ..config import PAPER_HINT, RUN_FLAG_PATHS, RunConfig, paper_preset, paper_row_names
from ..config.baseline import BaselineConfig
from ..config.experts import ExpertsConfig
from ..predictor import Predictor


@dataclass
class FitSettings:
    """How one fit runs: the run's seed and the fold's place in it, a folder every fold shares, the image
    cache and progress."""

    seed: int = 0
    fold_index: int = 0
    shared: Path | None = None
    cache_dir: str | Path | None = None
    progress: bool = True


class Method:
    """Base class: a config (``Config``, of ``kind``) and how to fit it (``fit``) into its ``predictor``."""

    kind: ClassVar[str]
    Config: ClassVar[type[BaseModel]]
    predictor: ClassVar[type[Predictor]]
    # where --epochs and the Lightning flags go in this kind of config (absent: the kind has no such setting)
    flag_paths: ClassVar[dict[str, str]] = {}
    generated: ClassVar[Any] = None  # names that stand for configs without a file (the paper's rows)
    hint: ClassVar[str] = ""

    def __init__(self, config: Any):
        self.config = config

    @classmethod
    def load_config(cls, name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Any:
        return load_config_file(name_or_path, cls.Config, cls.kind, overrides, cls.generated, cls.hint)

    @property
    def name(self) -> str:
        return str(getattr(self.config, "name", self.kind))

    def for_run(self, seed: int, folds: int | None = None) -> Method:
        """The method as a run with this seed (and CV of ``folds`` folds) uses it: recorded in its config."""
        return type(self)(self.config.model_copy(update={"seed": seed}))

    def val_share(self) -> float:
        """The share of training patients drawn for validation (early stopping, model choice)."""
        return 0.0

    def holdout(self) -> tuple[float, float]:
        """The validation and test shares of a hold-out ``train`` run."""
        return self.val_share(), 0.2

    def check(self, cohort: Cohort) -> None:
        """Fail before any work on what the method cannot do with this cohort."""

    def data_label(self) -> str:
        """What it sees, as comparison tables name it: imgs, attrs, imgs+attrs."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def uses_images(self) -> bool:
        return "imgs" in self.data_label()

    def fit(self, cohort: Cohort, fold: Fold, folder: Path, settings: FitSettings) -> Predictor:
        """Learn from ``fold.train`` and ``fold.val`` only (its test patients are never read)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def settings(self) -> dict[str, Any]:
        """What decides its results (a run's fingerprint)."""
        return self.config.model_dump(mode="json")

    def to_yaml(self) -> str:
        return self.config.to_yaml() if hasattr(self.config, "to_yaml") else dump_yaml(self.config)

    def fold_files(self, predictor: Predictor, cohort: Cohort, fold: Fold) -> dict[str, str]:
        """Further files a CV writes in a fold's folder (name -> text)."""
        return {}

    def summary(self, fitted: dict[str, Predictor]) -> dict[str, Any]:
        """What a CV summary adds about the fold predictors (e.g. what each fold chose)."""
        return {}


METHODS: Registry[type[Method]] = Registry("method")
# each with what loading its configs needs: the schema, the names that stand for generated configs, the
# flags it takes (the classes say the same: tests/test_extending.py checks they agree)
METHODS.declare(
    RUN,
    "smearmil.training.methods.run",
    config=RunConfig,
    generated=paper_preset,
    hint=PAPER_HINT,
    flag_paths=RUN_FLAG_PATHS,
)
METHODS.declare("experts", "smearmil.training.methods.feature_experts", config=ExpertsConfig, flag_paths={})
METHODS.declare("baseline", "smearmil.training.methods.baseline", config=BaselineConfig, flag_paths={})
METHOD_KINDS = ("experts", RUN, "baseline")  # the order presets are listed in


def load_method_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Any:
    """The validated config a config file or preset stands for (its ``kind``; none: a run config), without
    importing what fits it."""
    kind = config_kind(name_or_path)
    if (
        not is_config_file(name_or_path)
        and name_or_path not in shipped_presets()
        and not paper_preset(str(name_or_path))
    ):
        raise unknown_config(str(name_or_path), METHOD_KINDS, PAPER_HINT, tuple(paper_row_names("cnn-mean-k{32,64}")))
    if kind not in METHODS:
        raise ValueError(f"{name_or_path} is a {kind} config; a method is one of {METHODS.choices()}")
    info = METHODS.info(kind)
    if "config" not in info:  # registered without a declaration (a plug-in)
        return METHODS.get(kind).load_config(name_or_path, overrides)
    return load_config_file(name_or_path, info["config"], kind, overrides, info.get("generated"), info.get("hint", ""))


def method_flag_paths(kind: str) -> dict[str, str]:
    """Where --epochs and the Lightning flags go in configs of ``kind``."""
    info = METHODS.info(kind)
    return dict(info["flag_paths"]) if "flag_paths" in info else dict(METHODS.get(kind).flag_paths)


def load_method(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Method:
    """The method a config file or preset stands for (its ``kind``; none: a run config), validated."""
    return method_of(load_method_config(name_or_path, overrides))


def method_of(config: Any) -> Method:
    """The method of an already validated config (a run config has ``kind`` only in its model)."""
    kind = getattr(config, "kind", RUN)
    return METHODS.get(kind if kind in METHODS else RUN)(config)
