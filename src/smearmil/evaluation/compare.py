"""One-command comparison of deep models and baselines on identical patient-level folds."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from rich.markup import escape
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..baselines import BASELINES
from ..baselines.segmentation import SegmentationConfig
from ..baselines.store import bags_of_features, feature_matrix
from ..data.attributes import AttributeEncoder
from ..data.cache import build_cache
from ..data.cohort import Cohort
from ..data.images import Preprocessing
from ..data.options import DataOptions
from ..data.splits import Fold, make_splits
from ..training.config import load_config, read_yaml_config
from ..training.trained import PatientPrediction
from ..utils.atomic import write_json, write_text
from ..utils.progress import console
from ..utils.scoring import METRICS
from .cv import FoldPredictions, predictions_csv, run_cv, summarise
from .plots import roc_plot

DataKind = Literal["imgs", "attrs", "imgs+attrs"]
LABELS = {"balanced_accuracy": "bal. acc", "roc_auc": "ROC-AUC", "sensitivity": "sens", "specificity": "spec",
          "accuracy": "acc", "macro_f1": "macro-F1"}


class MethodSpec(BaseModel):
    """A deep model (``config``: preset or YAML) or a baseline (``baseline``: registry name)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    config: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    baseline: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    data: DataKind | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MethodSpec:
        if (self.config is None) == (self.baseline is None):
            raise ValueError(f"method {self.name!r}: give exactly one of config (deep model) or baseline")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ValueError(f"method {self.name!r}: unknown baseline {self.baseline!r}; choose from {BASELINES.names()}")
        if self.baseline and self.baseline.startswith("clinical/"):
            self.data = "attrs"
        elif self.baseline:
            self.data = self.data or "imgs"
        return self

    @property
    def label(self) -> str:
        return f"{self.name} [{self.data}]" if self.baseline and self.baseline.startswith("mil/") else self.name


class FeatureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 224
    crop: int | None = None
    n_jobs: int = 2


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
        return self


def load_compare_config(name_or_path: str) -> CompareConfig:
    raw, where = read_yaml_config(name_or_path)
    raw.setdefault("name", Path(name_or_path).stem if Path(name_or_path).suffix else name_or_path)
    try:
        config = CompareConfig.model_validate(raw)
    except ValidationError as error:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ValueError(f"{where} is not a valid comparison config:\n" + "\n".join(lines)) from None
    for m in config.methods:
        if m.config:
            model = load_config(m.config, m.overrides).model
            m.data = m.data or ("attrs" if model.kind == "mlp" else "imgs" if model.kind == "cnn" else "imgs+attrs")
    return config


class _FoldInputs:
    """Attributes encoded with each fold's training statistics, and per-patient feature bags."""

    def __init__(self, cohort: Cohort, config: CompareConfig, fold: Fold):
        self.train = list(fold.train) + list(fold.val)  # baselines need no validation split
        self.test = list(fold.test)
        self.encoder = AttributeEncoder(config.attributes, config.log_attributes, config.data.missing_policy)
        self.encoder.fit(cohort, self.train)

    def attributes(self, cohort: Cohort, ids: list[str]) -> np.ndarray:
        return self.encoder.transform(cohort, ids)


def _baseline_fold(spec: MethodSpec, cohort: Cohort, config: CompareConfig, fold: Fold, bags: dict[str, np.ndarray] | None,
                   seed: int) -> FoldPredictions:
    inputs = _FoldInputs(cohort, config, fold)
    y_train, y_test = cohort.labels(inputs.train), cohort.labels(inputs.test)
    model = BASELINES.build(spec.baseline or "", seed=seed, **spec.params)
    if spec.data == "attrs":
        model.fit(inputs.attributes(cohort, inputs.train), y_train)
        proba = model.predict_proba(inputs.attributes(cohort, inputs.test))
    else:
        assert bags is not None

        def instances(ids: list[str]) -> list[np.ndarray]:
            if spec.data == "imgs":
                return [bags[i] for i in ids]
            a = inputs.attributes(cohort, ids)  # early fusion: the patient's attributes on every instance
            return [np.hstack([bags[i], np.repeat(a[k][None], len(bags[i]), axis=0)]) for k, i in enumerate(ids)]

        model.fit(instances(inputs.train), y_train)
        proba = model.predict_proba(instances(inputs.test))
    predictions = [PatientPrediction(pid, p.astype(np.float64), None) for pid, p in zip(inputs.test, proba)]
    return FoldPredictions(fold.name, predictions, y_test, 0.5, "fixed")


def _read_predictions(path: Path, class_names: Sequence[str]) -> list[FoldPredictions]:
    rows = list(csv.DictReader(path.open()))
    out: dict[str, FoldPredictions] = {}
    for r in rows:
        f = out.setdefault(r["fold"], FoldPredictions(r["fold"], [], np.zeros(0, np.int64), 0.5, "fixed"))
        proba = np.array([float(r[f"prob_{c}"]) for c in class_names])
        f.predictions.append(PatientPrediction(r["patient"], proba, None))
        f.labels = np.append(f.labels, class_names.index(r["label"]))
    return list(out.values())


def comparison_markdown(summaries: Mapping[str, Mapping[str, Any]], title: str = "",
                        data: Mapping[str, str] | None = None) -> str:
    """A Markdown table: one row per method, mean ± std over the test folds of each metric."""
    def fmt(cell: Mapping[str, Any] | None) -> str:
        return "-" if not cell or cell.get("mean") is None else f"{cell['mean']:.3f} ± {cell.get('std') or 0:.3f}"

    head = "| method | data | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    rule = "|---|---|" + "---|" * len(METRICS)
    rows = [f"| {name} | {(data or {}).get(name, '')} | " + " | ".join(fmt(s["metrics"].get(m)) for m in METRICS) + " |"
            for name, s in summaries.items()]
    return "\n".join(([f"**{title}**", ""] if title else []) + [head, rule, *rows]) + "\n"


def _comparison_csv(summaries: Mapping[str, Mapping[str, Any]], data: Mapping[str, str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "data", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))])
    for name, s in summaries.items():
        cells = [s["metrics"][m].get(k) for m in METRICS for k in ("mean", "std")]
        writer.writerow([name, data[name], *("" if v is None else f"{v:.6f}" for v in cells)])
    return buffer.getvalue()


def run_compare(cohort: Cohort, config: CompareConfig, out: str | Path, folds: int = 5, seed: int = 0,
                cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every method on the same folds; write comparison.csv/.md, summary.json and roc.png to ``out``."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    plan = make_splits(cohort, "kfold", folds=folds, val=config.val, seed=seed)
    plan.save(out / "splits.json")
    bags = None
    if any(m.baseline and m.data != "attrs" for m in config.methods):
        image_cache = build_cache(cohort, Preprocessing(config.features.size, config.features.crop), cache_dir,
                                  progress=progress)
        features = feature_matrix(image_cache, SegmentationConfig(), config.features.n_jobs, progress)
        bags = dict(zip(cohort.ids, bags_of_features(image_cache, features, cohort.ids)))
    summaries: dict[str, dict[str, Any]] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    data: dict[str, str] = {}
    for spec in config.methods:
        label, method_dir = spec.label, out / "methods" / spec.label.replace("/", "-").replace(" ", "_")
        if progress:
            console.print(f"[bold]compare[/]: {escape(label)}")
        if spec.config:
            run_cv(cohort, load_config(spec.config, spec.overrides), method_dir, folds, seed, cache_dir, plan, progress)
            results = _read_predictions(method_dir / "predictions.csv", cohort.class_names)
        else:
            results = [_baseline_fold(spec, cohort, config, f, bags, seed) for f in plan.folds]
            write_text(method_dir / "predictions.csv", predictions_csv(results, cohort.class_names))
        summary = summarise(results, cohort.class_names, seed)
        write_json(method_dir / "summary.json", summary)
        summaries[label], data[label] = summary, spec.data or ""
        if len(cohort.class_names) == 2:
            curves[label] = (np.concatenate([f.labels for f in results]), np.concatenate([f.proba[:, 1] for f in results]))
    table = comparison_markdown(summaries, f"{folds}-fold CV, test folds (mean ± std)", data)
    write_text(out / "comparison.md", table)
    write_text(out / "comparison.csv", _comparison_csv(summaries, data))
    result = {
        "split": "test",
        "folds": folds,
        "methods": {name: {"data": data[name], "metrics": {m: {k: s["metrics"][m][k] for k in ("mean", "std")}
                                                          for m in METRICS}} for name, s in summaries.items()},
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out / "summary.json", result)
    if curves:
        roc_plot(curves, out / "roc.png", title=f"ROC, pooled test folds ({folds}-fold CV)")
    return result
