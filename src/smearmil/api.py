"""The small public Python API: load a cohort, train, cross-validate, load a model, predict.

    import smearmil
    cohort = smearmil.load_cohort("data/lymphocytosis-dev")
    model = smearmil.train(cohort, "cpu-cnn", out="runs/final")       # every labelled patient
    table = model.predict("data/lymphocytosis-unlabelled")            # a Table, one row per patient
    cells = model.cells                                               # one row per cell, signed contributions

Every function writes the same folders as the command line (``smearmil train --all``, ``smearmil cv``,
``smearmil predict``), so a model trained here predicts there and the other way round.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from .data.cohort import Cohort
from .data.options import DataOptions
from .data.validation import load_cohort as _read_cohort
from .data.validation import load_patients
from .protocols.predict import predict_to
from .training.config import load_config
from .training.methods import Method, load_method, method_of
from .training.predictor import Predictor, load_predictor
from .utils.locks import releasing
from .utils.spreadsheet import read_cell

__all__ = ["Model", "SmearMILClassifier", "Table", "cross_validate", "load", "load_cohort", "load_config", "train"]


class Table:
    """Rows of a CSV smearmil wrote: ``table["prob_tumoral"]`` is a column (an array), ``table[0]`` a row
    (a dict; negative indexes too), ``table[:5]`` a Table of those rows; ``len`` and ``for row in table``
    go by rows. ``to_pandas()`` needs pandas (``pip install smearmil[pandas]``)."""

    def __init__(self, rows: list[dict[str, Any]], columns: Sequence[str]):
        self.rows, self.columns = rows, list(columns)

    @classmethod
    def read_csv(cls, path: str | Path) -> Table:
        with Path(path).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [{k: read_cell(v) if k in TEXT_COLUMNS else _number(v) for k, v in r.items()} for r in reader]
            return cls(rows, reader.fieldnames or [])

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    @overload
    def __getitem__(self, key: str) -> np.ndarray: ...
    @overload
    def __getitem__(self, key: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, key: slice) -> Table: ...
    def __getitem__(self, key: str | int | slice) -> np.ndarray | dict[str, Any] | Table:
        """A column by name, a row by number, a Table of the rows of a slice."""
        if isinstance(key, slice):
            return Table(self.rows[key], self.columns)
        if isinstance(key, (int, np.integer)):
            if not -len(self) <= key < len(self):
                raise IndexError(f"row {key} of a table of {len(self)} rows; rows go 0 to {len(self) - 1}")
            return self.rows[key]
        if key not in self.columns:
            raise KeyError(f"no column {key!r}; columns: {', '.join(self.columns)} (or a row number)")
        return np.array([r[key] for r in self.rows])

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` of the rows; pandas is an optional extra."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Table.to_pandas() needs pandas, which smearmil does not install by itself: "
                "pip install smearmil[pandas]"
            ) from None
        return pd.DataFrame(self.rows, columns=self.columns)

    def __repr__(self) -> str:
        head = "\n".join("  " + ", ".join(f"{c}={r[c]}" for c in self.columns) for r in self.rows[:5])
        more = f"\n  ... {len(self) - 5} more" if len(self) > 5 else ""
        return f"Table({len(self)} rows)\n{head}{more}"


TEXT_COLUMNS = frozenset({"patient", "label", "prediction", "models", "file", "cell_type", "toward_class", "fold"})


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return text
    try:
        return float(text)
    except ValueError:
        return text


def load_cohort(path: str | Path, progress: bool = False, **options: Any) -> Cohort:
    """A checked cohort in any supported layout; ``options`` are DataOptions fields (``label_column="Dx"``,
    ``class_names=[...]``, ``attributes=[...]``, ``layout=...``)."""
    return _read_cohort(path, DataOptions.model_validate(options), progress=progress)


def _as_cohort(data: Cohort | str | Path | Sequence[str | Path], options: DataOptions) -> Cohort:
    if isinstance(data, Cohort):
        return data
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    return load_patients(paths, options, progress=False)


def _method(config: str | Path | Any, overrides: dict[str, Any] | None) -> Method:
    """The method of a config name or file (any registered kind), or of a validated config object."""
    if isinstance(config, (str, Path)):
        return load_method(config, overrides)
    if overrides:
        from .utils.config_files import merge_dicts

        config = type(config).model_validate(merge_dicts(config.model_dump(mode="json"), overrides))
    return method_of(config)


class Model:
    """A trained model folder (``train``, or a ``cv`` folder as the ensemble of its fold models)."""

    def __init__(self, path: str | Path, cache_dir: str | Path | None = None):
        self.path = Path(path)
        self.cache_dir = cache_dir
        self.predictor: Predictor = load_predictor(self.path)
        self.cells: Table | None = None  # cell contributions of the last predict()

    @property
    def class_names(self) -> list[str]:
        return self.predictor.class_names

    @releasing
    def predict(
        self, data: Cohort | str | Path | Sequence[str | Path], out: str | Path | None = None, attributes: Any = None
    ) -> Table:
        """One row per patient (``patient, label, prob_<class>..., prediction, gate_image_expert, models``);
        ``self.cells`` then holds one row per cell with its signed contribution. ``data``: a Cohort, a data
        set folder, or patient folders (``attributes``: their clinical CSV)."""
        if isinstance(data, Cohort):
            cohort = data
        else:
            paths = [data] if isinstance(data, (str, Path)) else list(data)
            options = self.predictor.data.for_new_patients(self.predictor.class_names)
            cohort = load_patients(paths, options, attributes, progress=False)
        with tempfile.TemporaryDirectory(prefix="smearmil-predict-") as scratch:  # removed when read
            target = Path(out) if out is not None else Path(scratch)
            predict_to(self.predictor, cohort, target, self.cache_dir, progress=False, overwrite=True)
            self.cells = Table.read_csv(target / "cells.csv")
            return Table.read_csv(target / "predictions.csv")

    def predict_proba(self, data: Cohort | str | Path | Sequence[str | Path]) -> np.ndarray:
        """(patients, classes) probabilities, in the cohort's patient order."""
        table = self.predict(data)
        return np.stack([table[f"prob_{c}"].astype(float) for c in self.class_names], axis=1)


def load(path: str | Path, cache_dir: str | Path | None = None) -> Model:
    """A model saved by ``train`` or ``cross_validate`` (its fold models as an ensemble)."""
    return Model(path, cache_dir)


@releasing
def train(
    cohort: Cohort | str | Path,
    config: str | Path | Any = "cpu-fusion",
    out: str | Path = "runs/final",
    overrides: dict[str, Any] | None = None,
    all_patients: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> Model:
    """Train a model (by default a final one on every labelled patient) and return it, loaded from ``out``;
    ``config``: a preset, YAML file or config object of any method."""
    from .protocols.runs import train_run

    method = _method(config, overrides)
    cohort = cohort if isinstance(cohort, Cohort) else _read_cohort(cohort, method.config.data, progress=progress)
    train_run(cohort, method, out, None, None, cache_dir, progress, overwrite, all_patients=all_patients)
    return Model(out, cache_dir)


@releasing
def cross_validate(
    cohort: Cohort | str | Path,
    config: str | Path | Any = "cpu-fusion",
    out: str | Path = "runs/cv",
    folds: int = 5,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Cross-validate by patient; returns ``summary.json`` (test-fold metrics). ``load(out)`` is then the
    ensemble of the fold models."""
    from .protocols.cv import CVSettings, run_cv

    method = _method(config, overrides)
    cohort = cohort if isinstance(cohort, Cohort) else _read_cohort(cohort, method.config.data, progress=progress)
    return run_cv(cohort, method, out, CVSettings(folds, seed, None, cache_dir, progress, overwrite)).summary


class SmearMILClassifier:
    """A scikit-learn-style estimator over cohorts: ``fit(cohort)`` trains a final model in ``out``;
    ``predict_proba(cohort)`` / ``predict(cohort)`` follow the cohort's patient order. Without ``out`` the
    model lives in a temporary folder removed with the estimator."""

    def __init__(
        self,
        config: str = "cpu-fusion",
        overrides: dict[str, Any] | None = None,
        out: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ):
        self.config, self.overrides, self.out, self.cache_dir = config, overrides, out, cache_dir

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"config": self.config, "overrides": self.overrides, "out": self.out, "cache_dir": self.cache_dir}

    def set_params(self, **params: Any) -> SmearMILClassifier:
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"unknown parameter {key!r}; parameters: {', '.join(self.get_params())}")
            setattr(self, key, value)
        return self

    def fit(self, cohort: Cohort | str | Path, y: Any = None) -> SmearMILClassifier:
        """Train on every labelled patient of ``cohort`` (labels come from the cohort; ``y`` is ignored)."""
        if self.out is None:  # a scratch model folder, removed with the estimator
            self._scratch = tempfile.TemporaryDirectory(prefix="smearmil-fit-")
        out = self.out or self._scratch.name
        self.model_ = train(cohort, self.config, out, self.overrides, cache_dir=self.cache_dir, overwrite=True)
        self.classes_ = np.array(self.model_.class_names)
        return self

    def predict_proba(self, cohort: Cohort | str | Path) -> np.ndarray:
        return self.model_.predict_proba(cohort)

    def predict(self, cohort: Cohort | str | Path) -> np.ndarray:
        from .utils.scoring import predict_labels

        return self.classes_[predict_labels(self.predict_proba(cohort), self.model_.predictor.threshold)]
