"""What a report reads from an output folder: its kind, classes, per-patient predictions, gates,
thresholds, summaries and provenance, whichever command wrote it (train, cv, compare, features cv,
ssl cv, predict)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..data.options import DataOptions
from ..training.run_dir import RunDir
from ..utils.spreadsheet import read_cell, read_rows

MARKER_KINDS = {
    "features-cv": "features cv",
    "ssl-cv": "ssl cv",
    "baseline-cv": "cv",
    "cv-seeds": "cv",
    "compare-seeds": "compare",
}
COMMANDS = {"train", "cv", "compare", "features cv", "ssl cv", "predict"}


@dataclass
class PatientRow:
    """One patient's line of a ``predictions.csv``."""

    patient: str
    truth: str | None  # None: unknown (a predict folder of unlabelled patients)
    proba: dict[str, float]
    prediction: str
    fold: str = ""
    gate: float | None = None  # weight of the image expert in a mixture of experts
    models: str = ""  # predict: which model(s) predicted

    @property
    def wrong(self) -> bool:
        return self.truth is not None and self.truth != self.prediction


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_predictions(path: Path) -> tuple[list[str], list[PatientRow]]:
    """Class names (from the ``prob_<class>`` columns, in order) and the rows of a ``predictions.csv``."""
    if not path.is_file():
        return [], []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        raw = [c[len("prob_") :] for c in reader.fieldnames or [] if c.startswith("prob_")]
        classes = [read_cell(c) for c in raw]
        rows = [
            PatientRow(
                patient=read_cell(r["patient"]),
                truth=read_cell(r.get("label") or "") or None,
                proba={read_cell(c): float(r[f"prob_{c}"]) for c in raw},
                prediction=read_cell(r.get("prediction", "")),
                fold=r.get("fold") or "",
                gate=_number(r.get("gate_image_expert")),
                models=r.get("models") or "",
            )
            for r in reader
        ]
    return classes, rows


def read_gates(folder: Path) -> dict[str, float]:
    """The image expert's gate per test patient, from the fold folders' ``experts.csv``."""
    gates: dict[str, float] = {}
    for name in ("experts.csv",):
        for path in sorted(folder.glob(f"*/{name}")):
            with path.open(newline="", encoding="utf-8") as handle:
                for r in read_rows(handle):
                    value = _number(r.get("gate_image_expert"))
                    if value is not None:
                        gates.setdefault(r["patient"], value)
    return gates


@dataclass
class Method:
    """One method of a comparison (or the run itself): its folder, classes and predictions."""

    name: str
    path: Path
    classes: list[str]
    rows: list[PatientRow] = field(default_factory=list)


class OutputFolder:
    """An output folder as a report sees it."""

    def __init__(self, path: str | Path):
        self.run = RunDir(path)
        self.path = self.run.path

    def json(self, name: str) -> dict[str, Any] | None:
        value = self.run.read_json(self.path / name)
        return value if isinstance(value, dict) else None

    @cached_property
    def info(self) -> dict[str, Any]:
        """``run.json``: the command, the data and the provenance of the run."""
        return self.json("run.json") or {}

    @cached_property
    def summary(self) -> dict[str, Any] | None:
        return self.json("summary.json")

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        return self.json("metrics.json")

    @cached_property
    def kind(self) -> str:
        """train, cv, compare, features cv, ssl cv or predict."""
        marker = (self.json(".smearmil.json") or {}).get("kind")
        if isinstance(marker, str) and (marker in COMMANDS or marker in MARKER_KINDS):
            return MARKER_KINDS.get(marker, marker)
        if self.info.get("command") in COMMANDS:
            return str(self.info["command"])
        if (self.path / "cells.csv").is_file():
            return "predict"
        if self.run.is_single_model:
            return "train"
        return "compare" if self.summary and "methods" in self.summary else "cv"

    @cached_property
    def methods(self) -> list[Method]:
        """The run's own predictions (one method), or each method of a comparison that wrote some."""
        if self.kind != "compare":
            seeds = sorted(self.path.glob("seed-*/predictions.csv"))  # a repeated CV: its first seed's
            where = self.path if self.run.predictions.is_file() or not seeds else seeds[0].parent
            classes, rows = read_predictions(where / self.run.predictions.name)
            gates = read_gates(where)
            for r in rows:
                if r.gate is None:
                    r.gate = gates.get(r.patient)
            name = self.path.name if where == self.path else f"{self.path.name}/{where.name}"
            return [Method(name, where, classes, rows)] if rows else []
        found = []
        methods = (self.summary or {}).get("methods", {})
        names = list(methods)
        recorded = {str(m.get("folder", "")).rsplit("/", 1)[-1]: n for n, m in methods.items() if isinstance(m, dict)}
        for folder in sorted((self.path / "methods").glob("*/predictions.csv")):
            classes, rows = read_predictions(folder)
            gates = read_gates(folder.parent)
            for r in rows:
                r.gate = gates.get(r.patient)
            label = recorded.get(folder.parent.name) or next(
                (n for n in names if _same(n, folder.parent.name)), folder.parent.name
            )
            found.append(Method(label, folder.parent, classes, rows))
        return found

    @cached_property
    def labelled(self) -> bool:
        """Whether the true class of some patient is known (every run's but a predict of new patients)."""
        return self.kind != "predict" or any(r.truth is not None for m in self.methods for r in m.rows)

    @cached_property
    def class_names(self) -> list[str]:
        for m in self.methods:
            if m.classes:
                return m.classes
        for source in (self.summary, self.json("predictor.json")):
            if source and source.get("class_names"):
                return list(source["class_names"])
        return []

    def choices(self) -> dict[str, dict[str, Any]]:
        """What each fitted model chose inside its training patients, by fold (a CV, a repeated CV's
        ``seed-0/fold0``, or a predict folder's model) or ``final model`` (a train run)."""
        return {name: value for name, (_, value) in self.chosen().items()}

    def chosen(self) -> dict[str, tuple[Path, dict[str, Any]]]:
        """``choices`` with the folder of each model (where its ``experts.json`` and ``experts.csv`` are)."""
        if self.kind == "compare":  # each compared method's models
            return {
                f"{m.name}: {k}": v
                for m in self.methods
                if m.path != self.path
                for k, v in OutputFolder(m.path).chosen().items()
            }
        if self.summary and isinstance(self.summary.get("choices"), dict):
            return {k: (self.path / k, v) for k, v in self.summary["choices"].items() if isinstance(v, dict) and v}
        model = Path(str(self.info.get("model"))) if self.kind == "predict" and self.info.get("model") else self.path
        found = {}
        paths = [
            model / "choices.json",
            *sorted(model.glob("*/choices.json")),
            *sorted(model.glob("seed-*/*/choices.json")),
        ]
        for path in paths:  # a train run's, each fold's, each fold of each seed's (cv --seeds)
            value = self.run.read_json(path)
            if isinstance(value, dict) and value:
                name = "final model" if path.parent == model else str(path.parent.relative_to(model))
                found[name] = (path.parent, value)
        return found

    def thresholds(self) -> list[float]:
        """The model's threshold(s) on P(positive class): one per fold when they differ."""
        found: list[float] = []
        if self.kind == "predict":
            return self._predict_threshold()
        if self.methods and self.methods[0].path != self.path and self.kind == "cv":  # a repeated CV: its seed's
            return OutputFolder(self.methods[0].path).thresholds()
        if self.metrics and self.metrics.get("splits", {}).get("test"):
            found.append(float(self.metrics["splits"]["test"]["threshold"]))
        elif self.summary and isinstance(self.summary.get("folds"), list):
            found += [float(f["threshold"]) for f in self.summary["folds"] if f.get("threshold") is not None]
        return sorted(set(found))

    def cuts(self, method: Method) -> dict[str, float]:
        """The binary threshold of ``method``'s models per fold name (``""``: any fold), from its folder."""
        own = self if method.path == self.path else OutputFolder(method.path)
        found: dict[str, float] = {}
        folds = (own.summary or {}).get("folds")
        for f in folds if isinstance(folds, list) else []:
            if isinstance(f, dict) and f.get("fold") and isinstance(f.get("threshold"), (int, float)):
                found[str(f["fold"])] = float(f["threshold"])
        common = own.thresholds()
        if common:
            found[""] = sum(common) / len(common)
        return found

    def _predict_threshold(self) -> list[float]:
        """A predict folder's threshold: its summary's, else the mean over the model folder's models (as
        ``predict`` applies it to an ensemble of fold models)."""
        if self.summary and isinstance(self.summary.get("threshold"), (int, float)):
            return [float(self.summary["threshold"])]
        model = Path(str(self.info.get("model") or self.path / "missing"))
        metas = [m for m in [model / "predictor.json", *sorted(model.glob("*/predictor.json"))] if m.is_file()]
        found = [float(json.loads(m.read_text(encoding="utf-8")).get("threshold", 0.5)) for m in metas]
        return [sum(found) / len(found)] if found else []

    def data_path(self) -> Path | None:
        """The data set the run read: ``run.json``, or a compared method's or a seed's (repeated CV)."""
        inner = [*sorted(self.path.glob("*/run.json")), *sorted(self.path.glob("methods/*/run.json"))]
        infos = [self.info, *(self.json(str(p.relative_to(self.path))) or {} for p in inner)]
        for info in infos:
            if info.get("data"):
                return Path(str(info["data"]))
        return None

    def data_options(self) -> DataOptions:
        """How to read the run's data: its resolved config's ``data`` section when it has one. Images are
        checked as the run checked them: skipping the check keeps the duplicate cells the run dropped, so the
        cells differ, and the report misses the run's caches (on 80 patients, 16 minutes of cell features
        computed again instead of 6 seconds of decoding)."""
        options: dict[str, Any] = {}
        if self.run.config.is_file():
            try:
                config = yaml.safe_load(self.run.config.read_text(encoding="utf-8"))
                options = dict(config.get("data") or {}) if isinstance(config, dict) else {}
            except yaml.YAMLError:
                options = {}
        layout = self.info.get("layout")
        if not options and isinstance(layout, str) and layout != "features":
            options = {"layout": layout}
        try:
            return DataOptions(**options)
        except ValueError:
            return DataOptions()

    def image_run(self) -> tuple[str, Path] | None:
        """The folder whose trained models look at cells (for galleries): the run, or a compared method's."""
        candidates = [(m.name, m.path) for m in self.methods] if self.kind in ("train", "cv", "compare") else []
        for name, path in candidates:
            metas = [path / "predictor.json", *sorted(path.glob("*/predictor.json"))]
            for meta in metas:
                if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("uses_images"):
                    return name, path
        return None


def _same(label: str, folder: str) -> bool:
    return label.replace("/", "-").replace(" ", "_") == folder


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every key of a JSON object as ``a.b`` rows, lists and scalars as text."""
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for k, v in value.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(value, list):
        return [(prefix, ", ".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in value))]
    return [(prefix, "-" if value is None else str(value))]
