"""Clinical attributes as model inputs, fitted on the training split only (no leakage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cohort import Cohort
from .problems import DataError, Problem


@dataclass
class AttributeEncoder:
    """Log-transform (by option), impute with the training median plus a missing indicator, standardise.

    With ``missing="error"`` any missing value raises a DataError naming the patient.
    """

    names: list[str]
    log: Sequence[str] = ("lymph_count",)
    missing: str = "impute"
    medians: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    indicators: list[str] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        return [f"log_{n}" if n in self.log else n for n in self.names] + [f"{n}_missing" for n in self.indicators]

    def _raw(self, cohort: Cohort, ids: Sequence[str]) -> np.ndarray:
        unknown = [n for n in self.names if n not in cohort.attribute_names]
        if unknown:
            raise DataError(
                [
                    Problem(
                        "unknown_attribute",
                        str(cohort.root),
                        f"attribute(s) {unknown} not in the cohort (it has {cohort.attribute_names})",
                    )
                ]
            )
        x = cohort.attribute_matrix(list(ids), self.names)
        for j, name in enumerate(self.names):
            if name in self.log:
                with np.errstate(divide="ignore", invalid="ignore"):
                    x[:, j] = np.where(x[:, j] > 0, np.log(x[:, j]), np.nan)
        if self.missing == "error" and np.isnan(x).any():
            rows, cols = np.nonzero(np.isnan(x))
            raise DataError(
                [
                    Problem(
                        "missing_value",
                        f"patient {ids[int(r)]}",
                        f"{self.names[int(c)]} is missing; fill it in or set missing_policy: impute",
                    )
                    for r, c in zip(rows, cols)
                ]
            )
        return x

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> AttributeEncoder:
        x = self._raw(cohort, train_ids)
        self.indicators = [n for j, n in enumerate(self.names) if np.isnan(x[:, j]).any()]
        for j, name in enumerate(self.names):
            present = x[~np.isnan(x[:, j]), j]
            if present.size == 0:
                raise DataError(
                    [Problem("missing_value", str(cohort.root), f"{name} is missing for every training patient")]
                )
            self.medians[name] = float(np.median(present))
            filled = np.where(np.isnan(x[:, j]), self.medians[name], x[:, j])
            self.means[name] = float(filled.mean())
            self.stds[name] = float(filled.std()) or 1.0
        return self

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> np.ndarray:
        if not self.medians:
            raise RuntimeError("AttributeEncoder.transform called before fit")
        x = self._raw(cohort, ids)
        missing = np.isnan(x)
        columns = []
        for j, name in enumerate(self.names):
            filled = np.where(missing[:, j], self.medians[name], x[:, j])
            columns.append((filled - self.means[name]) / self.stds[name])
        columns += [missing[:, self.names.index(n)].astype(np.float64) for n in self.indicators]
        return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(ids), 0), np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "log": list(self.log),
            "missing": self.missing,
            "medians": self.medians,
            "means": self.means,
            "stds": self.stds,
            "indicators": self.indicators,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributeEncoder:
        return cls(**d)
