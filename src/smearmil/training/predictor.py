"""What every fitted method gives: a predictor that predicts patients, explains their cells, saves and loads.

A predictor folder holds ``predictor.json`` (the registered method that wrote it, with the class names,
threshold and data options) beside the method's own files. ``load_predictor`` opens such a folder, a ``cv``
folder (its fold predictors averaged) or a repeated CV (every fold of every seed averaged).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..data.cohort import UNKNOWN_CELL_TYPE, Cohort
from ..data.options import DataOptions
from ..utils.atomic import write_json

if TYPE_CHECKING:
    from ..data.cache import ImageCache

PREDICTOR_META = "predictor.json"
FORMAT_VERSION = 1
Subsets = dict[str, np.ndarray]  # patient id -> indices of the cells to look at (repeatability's image sets)


@dataclass
class Prediction:
    """One patient: probabilities, what the parts of a fusion said (``details``: each expert's probability,
    the fusion's weights or gate) and, for a predictor that sees cells, each cell's signed contribution."""

    id: str
    proba: np.ndarray
    gate: float | None = None  # a mixture's weight of the image expert
    details: dict[str, float] = field(default_factory=dict)
    files: list[str] | None = None
    # (n_cells, columns), in logit units: one column for two classes (toward the positive class), else one per
    # class (toward it relative to the others); ``contribution()`` picks the column the patient is explained by
    contributions: np.ndarray | None = None
    cell_types: list[str] | None = None

    def contribution(self) -> np.ndarray | None:
        """Each cell's contribution toward the class that explains this patient (``toward_class``)."""
        if self.contributions is None:
            return None
        return self.contributions[:, 0 if self.contributions.shape[1] == 1 else int(np.argmax(self.proba))]


class Predictor:
    """Base class: ``predict`` patients of any cohort, ``save`` to and ``load`` from a folder."""

    method: ClassVar[str]  # the registered method whose ``Predictor`` loads it
    class_names: list[str]
    threshold: float = 0.5
    threshold_source: str = "fixed"
    data: DataOptions  # how the training cohort was read (new patients are read alike)
    attributes: list[str]  # the clinical attributes it needs
    uses_images: bool = True
    source: Path | None = None  # the folder it was loaded from

    def predict(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        subsets: Subsets | None = None,
        explain: bool = True,
    ) -> list[Prediction]:
        """Predict ``ids`` of ``cohort`` (only the cells ``subsets`` names, where given); a predictor that
        sees cells also gives each cell's contribution (with ``explain``, not for subsets)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def toward(self, proba: np.ndarray) -> int:
        """The class whose logit a patient's contributions explain."""
        return 1 if len(self.class_names) == 2 else int(np.argmax(proba))

    def choices(self) -> dict[str, Any]:
        """What the method chose from its training patients (written beside a fold's predictions)."""
        return {}

    @property
    def label(self) -> str:
        """How tables name it (a deep model by its kind: CNN, MLP, AVG, MOE)."""
        return self.method

    @property
    def preprocessing(self) -> Any:
        """How it wants cells cached (a ``Preprocessing``), or None when it sees no cell."""
        return None

    def parts(self) -> dict[str, Predictor]:
        """It and the predictors inside it by name (a fusion's experts), for repeatability's rows."""
        return {self.label.upper(): self}

    def save(self, folder: str | Path) -> None:
        """The method's own files (``save_files``), then ``predictor.json`` last: its presence marks a
        finished predictor."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        own = self.save_files(folder)
        write_json(
            folder / PREDICTOR_META,
            {
                "format": FORMAT_VERSION,
                "method": self.method,
                "class_names": list(self.class_names),
                "threshold": self.threshold,
                "threshold_source": self.threshold_source,
                "data": self.data.model_dump(mode="json"),
                "attributes": list(self.attributes),
                "uses_images": self.uses_images,
                **own,
            },
        )

    def save_files(self, folder: Path) -> dict[str, Any]:
        """Write the method's files into ``folder``; returns what ``predictor.json`` should also hold."""
        raise NotImplementedError  # pragma: no cover - abstract

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Predictor:
        """A predictor from its folder and its ``predictor.json`` (weights read without unpickling)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def restore(self, meta: dict[str, Any], folder: Path) -> Predictor:
        """The shared fields of ``predictor.json`` set on a freshly loaded predictor."""
        self.class_names = list(meta["class_names"])
        self.threshold, self.threshold_source = float(meta["threshold"]), str(meta["threshold_source"])
        self.data = DataOptions.model_validate(meta.get("data") or {})
        self.attributes = list(meta.get("attributes") or [])
        self.source = folder
        return self


def is_predictor(folder: str | Path) -> bool:
    return (Path(folder) / PREDICTOR_META).is_file()


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / PREDICTOR_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not {"method", "class_names", "threshold"} <= set(meta):
            raise ValueError("fields missing")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a predictor smearmil wrote ({error}); train it again") from None
    return meta


def cell_info(cohort: Cohort, cache: ImageCache, patient_id: str) -> tuple[list[str], list[str]]:
    """Absolute file and cell type of each cached cell of a patient (in cache order)."""
    patient = cohort[patient_id]
    types = dict(zip(map(str, patient.images), patient.cell_types or []))
    files = []
    for cell in cache.cell_ids(patient_id):
        path = Path(cell)
        files.append(str(path if path.is_absolute() else cohort.root / path))
    return files, [types.get(f, UNKNOWN_CELL_TYPE) for f in files]


def check_attributes(predictor: Predictor, cohort: Cohort) -> None:
    missing = [n for n in predictor.attributes if n not in cohort.attribute_names]
    if missing:
        raise ValueError(
            f"the model needs the attributes {predictor.attributes}, the cohort lacks {missing}: give a clinical "
            "table (--csv, or --attributes FILE for patient folders) with them"
        )


class Ensemble(Predictor):
    """Several predictors of one method averaged: probabilities, gates, details and contributions."""

    method = "ensemble"

    def __init__(self, members: Sequence[Predictor], names: Sequence[str], source: Path):
        first = members[0]
        self.members, self.names, self.source = list(members), list(names), source
        self.class_names, self.data, self.attributes = first.class_names, first.data, first.attributes
        self.uses_images = first.uses_images
        self.threshold = float(np.mean([m.threshold for m in members]))
        self.threshold_source = first.threshold_source

    @property
    def kind(self) -> str:
        return f"ensemble of {len(self.members)} fold models"

    def predict(
        self,
        cohort: Cohort,
        ids: Sequence[str],
        cache_dir: str | Path | None = None,
        progress: bool = True,
        subsets: Subsets | None = None,
        explain: bool = True,
    ) -> list[Prediction]:
        each = [m.predict(cohort, ids, cache_dir, progress, subsets, explain) for m in self.members]
        out = []
        for k, pid in enumerate(ids):
            parts = [found[k] for found in each]
            proba = np.mean([p.proba for p in parts], axis=0)
            gates = [p.gate for p in parts if p.gate is not None]
            keys = {key for p in parts for key in p.details}
            details = {key: float(np.mean([p.details[key] for p in parts if key in p.details])) for key in keys}
            prediction = Prediction(pid, proba, float(np.mean(gates)) if gates else None, dict(sorted(details.items())))
            explained = [p.contributions for p in parts if p.contributions is not None]
            if explained and len(explained) == len(parts):
                prediction.files, prediction.cell_types = parts[0].files, parts[0].cell_types
                prediction.contributions = np.mean(explained, axis=0)
            out.append(prediction)
        return out

    def save_files(self, folder: Path) -> dict[str, Any]:  # pragma: no cover - a CV folder is the ensemble
        raise ValueError("an ensemble is the folder of its members (a cv folder); it is not saved on its own")


def load_one(folder: Path) -> Predictor:
    """The predictor saved in ``folder`` (its ``predictor.json`` names the method that loads it)."""
    from .methods import METHODS

    meta = read_meta(folder)
    if str(meta["method"]) not in METHODS:
        raise ValueError(
            f"{folder / PREDICTOR_META} names the method {meta['method']!r}, which this smearmil does not know "
            f"({METHODS.choices()}): predict with the smearmil (or plug-in) that trained it"
        )
    method = METHODS.get(str(meta["method"]))
    try:
        return method.predictor.load(folder, meta).restore(meta, folder)
    except (KeyError, TypeError, OSError, json.JSONDecodeError) as error:
        what = f"{type(error).__name__}: {error}"
        raise ValueError(f"{folder}: a saved model file is missing or damaged ({what}); train it again") from None


def load_predictor(path: str | Path) -> Predictor:
    """A predictor from a ``train`` folder, a ``cv`` folder (its folds averaged) or a repeated CV (every fold
    of every seed averaged)."""
    from ..data.splits import SplitPlan

    path = Path(path)
    if is_predictor(path):
        return load_one(path)
    seeds = sorted((p for p in path.glob("seed-*") if (p / "splits.json").is_file()), key=lambda p: p.name)
    folders = [path] if (path / "splits.json").is_file() else seeds
    if not folders:
        raise FileNotFoundError(
            f"{path} holds no trained model: give a folder written by `smearmil train` or `smearmil cv`"
        )
    members, names = [], []
    for folder in folders:
        plan = SplitPlan.load(folder / "splits.json")
        missing = [f.name for f in plan.folds if not is_predictor(folder / f.name)]
        if (folder / "summary.json").is_file() and len(missing) == len(plan.folds):
            raise ValueError(
                f"{folder}: a finished CV without saved fold models ({', '.join(missing)}): it was written by an "
                "older smearmil or by a CV that keeps no models; run `smearmil cv` again into a new --out (or with "
                "--overwrite) to predict with its folds"
            )
        if missing:
            raise ValueError(
                f"{folder}: the CV is unfinished (no model for {', '.join(missing)}); finish it by running the same "
                "`smearmil cv` command again, which resumes, before predicting with its folds"
            )
        prefix = f"{folder.name}/" if folder is not path else ""
        for f in plan.folds:
            members.append(load_one(folder / f.name))
            names.append(prefix + f.name)
    return Ensemble(members, names, path)


def members_of(predictor: Predictor) -> list[tuple[str, Predictor]]:
    """The fold predictors of an ensemble by name, or the predictor alone as ``model``."""
    if isinstance(predictor, Ensemble):
        return list(zip(predictor.names, predictor.members))
    return [("model", predictor)]


def model_names(predictor: Predictor) -> str:
    """Which model(s) predict, as ``predictions.csv`` writes it."""
    return "+".join(name for name, _ in members_of(predictor))


def kind_of_predictor(predictor: Predictor) -> str:
    return predictor.kind if isinstance(predictor, Ensemble) else "model"
