"""What the review page reads from an output folder (``predict``, ``cv`` or ``evaluate``): each patient's
call and uncertainty (``protocols.worklist``), what each expert said, the patient's cells ranked by their
signed contribution toward the call (``cells.csv``; ``attention.csv`` or the data set's images when the
folder has no contributions), and the patient's attributes beside the training cohort's. Read once, never
written: every file the page serves is one listed here."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cohort import UNKNOWN_CELL_TYPE, Cohort
from ..explain.evidence import evidence_shares, toward_call
from ..protocols.worklist import DEFAULT_BAND, calls
from ..report.folder import OutputFolder
from ..utils.outputs import digest
from ..utils.spreadsheet import read_rows

FIXED_COLUMNS = {"patient", "label", "prediction", "models", "fold"}


@dataclass(frozen=True)
class ReviewCell:
    """One cell of a patient: its file, type, and its signed share of the evidence toward the call (None:
    the folder holds no contribution; ``attention``: a features head's relative attention instead)."""

    file: Path
    cell_type: str
    share: float | None = None
    logit: float | None = None  # raw contribution toward ``toward_class`` (cells.csv)
    attention: float | None = None

    @property
    def type_known(self) -> bool:
        return self.cell_type not in ("", UNKNOWN_CELL_TYPE)


@dataclass
class ReviewPatient:
    """One line of the worklist and its page."""

    index: int
    id: str
    label: str  # the true class, empty when unknown
    proba: dict[str, float]
    call: str
    probability: float  # the positive class's (two classes) or the call's
    uncertain: bool
    experts: dict[str, str]  # what each expert said, the fusion's weights or gate
    cells: list[ReviewCell] = field(default_factory=list)
    toward_class: str = ""  # the class cells.csv's contributions push toward
    threshold: float = 0.5  # on P(positive class): a cv patient's is its test fold's


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(read_rows(handle))


class ReviewFolder:
    """A folder of per-patient predictions, as the review page shows it."""

    def __init__(self, path: str | Path, band: float = DEFAULT_BAND):
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder (give the output of predict, cv or evaluate)")
        self.output = OutputFolder(self.path)
        self.source = self._predictions_file()
        self.band = band
        rows = _read(self.source)
        if not rows:
            raise ValueError(f"{self.source} lists no patient: nothing to review")
        self.class_names = self.output.class_names or [c[len("prob_") :] for c in rows[0] if c.startswith("prob_")]
        thresholds = self.output.thresholds()
        self.threshold = sum(thresholds) / len(thresholds) if thresholds else 0.5
        self.patients = self._patients(rows)
        self._by_id = {p.id: p for p in self.patients}
        self._add_cells()

    def _predictions_file(self) -> Path:
        methods = self.output.methods
        if not methods:
            raise FileNotFoundError(
                f"{self.path} holds no predictions.csv: give the output folder of `smearmil predict`, `cv` or "
                "`evaluate`"
            )
        return methods[0].path / "predictions.csv"

    def _patients(self, rows: list[dict[str, str]]) -> list[ReviewPatient]:
        cuts = self.output.cuts(self.output.methods[0])  # fold -> threshold ("": the folder's mean)
        seen: set[str] = set()
        out: list[ReviewPatient] = []
        for row in rows:
            cut = cuts.get(str(row.get("fold") or ""), self.threshold)
            call = calls([row], self.class_names, cut, self.band)[0]
            if call.patient in seen:  # a repeated id (a compare's methods): the first line stands
                continue
            seen.add(call.patient)
            experts = {
                k: v
                for k, v in row.items()
                if k not in FIXED_COLUMNS and not k.startswith("prob_") and v not in ("", None)
            }
            out.append(
                ReviewPatient(
                    index=len(out),
                    id=call.patient,
                    label=call.label,
                    proba={c: float(row[f"prob_{c}"]) for c in self.class_names},
                    call=call.call,
                    probability=call.probability,
                    uncertain=call.uncertain,
                    experts=experts,
                    threshold=cut,
                )
            )
        return out

    def __getitem__(self, patient: str) -> ReviewPatient:
        return self._by_id[patient]

    @property
    def kind(self) -> str:
        return self.output.kind

    @property
    def labelled(self) -> bool:
        return any(p.label for p in self.patients)

    @cached_property
    def identity(self) -> str:
        """What makes two folders the same cohort for a decisions database: its classes and patients."""
        return digest({"classes": self.class_names, "patients": sorted(p.id for p in self.patients)})

    # cells

    def _add_cells(self) -> None:
        contributions = self.path / "cells.csv"
        attention = self.source.parent / "attention.csv"
        if contributions.is_file():
            self._cells_from_contributions(_read(contributions))
        elif attention.is_file():
            self._cells_from_attention(_read(attention))
        elif self.data is not None:
            for p in self.patients:
                if p.id in self.data:
                    known = self.data[p.id]
                    types = known.cell_types or [UNKNOWN_CELL_TYPE] * len(known.images)
                    p.cells = [ReviewCell(Path(f), t) for f, t in zip(known.images, types)]

    def _cells_from_contributions(self, rows: list[dict[str, str]]) -> None:
        per: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            per.setdefault(row["patient"], []).append(row)
        for p in self.patients:
            mine = per.get(p.id, [])
            if not mine:
                continue
            p.toward_class = mine[0]["toward_class"]
            raw = np.array([float(r["logit_contribution_toward_class"]) for r in mine])
            against = (
                next((c for c in self.class_names if c != p.toward_class), "") if len(self.class_names) == 2 else ""
            )
            values, _, _ = toward_call(raw, p.toward_class, against, p.call)
            shares = evidence_shares(values)
            cells = [
                ReviewCell(Path(r["file"]), r.get("cell_type") or "", float(s), float(v))
                for r, s, v in zip(mine, shares, raw)
            ]
            p.cells = sorted(cells, key=lambda c: -(c.share or 0.0))  # most toward the call first

    def _cells_from_attention(self, rows: list[dict[str, str]]) -> None:
        root = self.output.data_path() or self.path
        per: dict[str, list[ReviewCell]] = {}
        for row in rows:
            cell = Path(row["cell"])
            value = _float(row.get("relative_attention"))
            per.setdefault(row["patient"], []).append(
                ReviewCell(cell if cell.is_absolute() else root / cell, row.get("cell_type") or "", attention=value)
            )
        for p in self.patients:
            p.cells = sorted(per.get(p.id, []), key=lambda c: -(c.attention or 0.0))

    @property
    def ranked_by(self) -> str:
        """How each patient's cells are ordered, in words."""
        if (self.path / "cells.csv").is_file():
            return "signed contribution toward the call"
        if (self.source.parent / "attention.csv").is_file():
            return "relative attention (where the head looks, not which way)"
        return "the data set's order (this folder holds no cell contributions: `smearmil predict` writes them)"

    # attributes and the training cohort

    @cached_property
    def data(self) -> Cohort | None:
        """The patients' data set as the run read it (attributes, images), None when it is gone."""
        return _cohort_at(self.output.data_path(), self.output)

    @cached_property
    def model_folder(self) -> Path | None:
        model = self.output.info.get("model") if self.kind == "predict" else None
        if not model:
            return self.path if self.kind != "predict" else None
        for where in (Path(str(model)), self.path.parent / str(model)):
            if where.is_dir():
                return where
        return None

    @cached_property
    def training(self) -> Cohort | None:
        """The cohort the model trained on (a cv or evaluate folder's own data set)."""
        folder = self.model_folder
        if folder is None:
            return None
        run = OutputFolder(folder)
        return _cohort_at(run.data_path(), run)

    @cached_property
    def model_attributes(self) -> list[str]:
        """The attributes the model reads (empty: images alone, or unknown)."""
        folder = self.model_folder
        metas = [folder / "predictor.json", *sorted(folder.glob("*/predictor.json"))] if folder else []
        for meta in metas:
            if meta.is_file():
                value = json.loads(meta.read_text(encoding="utf-8")).get("attributes") or []
                return [str(a) for a in value]
        return []

    @cached_property
    def attribute_names(self) -> list[str]:
        """Every attribute the patients' data set holds, in its order (empty: none, or the data set is gone)."""
        names: dict[str, None] = {}
        for p in self.patients:
            if self.data is not None and p.id in self.data:
                names.update(dict.fromkeys(self.data[p.id].attributes))
        return list(names)

    def attribute_values(self, patient: ReviewPatient) -> dict[str, float]:
        """The patient's attributes (empty when the data set is gone or does not list the patient)."""
        if self.data is None or patient.id not in self.data:
            return {}
        return dict(self.data[patient.id].attributes)

    def attributes(self, patient: ReviewPatient) -> list[dict[str, Any]]:
        """The patient's attributes, each with where it falls among the training cohort's patients."""
        if self.data is None or patient.id not in self.data:
            return []
        values = self.data[patient.id].attributes
        cohort = self.training
        out = []
        for name, value in values.items():
            row: dict[str, Any] = {"name": name, "value": value, "used": name in self.model_attributes}
            known = (
                np.array([v for p in cohort.patients if not math.isnan(v := p.attributes.get(name, math.nan))])
                if cohort is not None
                else np.zeros(0)
            )
            if len(known) and not math.isnan(value):
                row["percentile"] = float(100 * (np.sum(known < value) + 0.5 * np.sum(known == value)) / len(known))
                row["range"] = (float(known.min()), float(np.median(known)), float(known.max()))
                row["n"] = len(known)
            out.append(row)
        return out

    def evidence(self, patient: ReviewPatient) -> str:
        """The model's evidence in one sentence, in logit units toward the positive class (two classes).

        An experts run's stacking fusion writes each input's exact share of the fused log-odds
        (``stack_<input>``): images are the image expert's, attributes the attribute expert's and the raw
        attributes', the rest is the stack's bias. A mixture's gate weighs the experts' probabilities, so
        its sentence gives the gate and what each expert says. Otherwise the cells' summed contributions (``cells.csv``)
        are the images' share and the rest is the attributes' and the bias's together."""
        positive, negative = (self.class_names[1], self.class_names[0]) if len(self.class_names) == 2 else ("", "")

        def push(value: float) -> str:
            return f"toward {positive if value >= 0 else negative} ({value:+.2f})"

        stack = {k[len("stack_") :]: _float(v) for k, v in patient.experts.items() if k.startswith("stack_")}
        if positive and stack and None not in stack.values():
            p = min(max(patient.proba[positive], 1e-6), 1 - 1e-6)
            total = math.log(p / (1 - p))
            images = sum(v or 0.0 for k, v in stack.items() if k == "image" or k.startswith("image:"))
            attributes = sum(v or 0.0 for k, v in stack.items() if not (k == "image" or k.startswith("image:")))
            return (
                f"images push {push(images)}, attributes {push(attributes)}, bias {push(total - images - attributes)}"
                f": logit {total:+.2f} toward {positive}"
            )
        gate, p_image, p_attributes = (
            _float(patient.experts.get(k)) for k in ("gate_image_expert", "p_image", "p_attributes")
        )
        if positive and gate is not None and p_image is not None and p_attributes is not None:
            return (  # a mixture: p = g p_image + (1 - g) p_attributes, not a sum of logits
                f"the gate trusts the images {gate:.2f} (they say P({positive}) = {p_image:.2f}) and the "
                f"attributes {1 - gate:.2f} (P({positive}) = {p_attributes:.2f}): P({positive}) = "
                f"{patient.proba[positive]:.2f}"
            )
        logits = [c.logit for c in patient.cells if c.logit is not None]
        if not logits or not positive:
            if patient.cells and patient.cells[0].share is not None:
                return f"the cells' contributions are toward {patient.call} (logit units, away from the mean class)"
            return (
                "this folder holds no cell contributions, so the evidence cannot be split between images and attributes"
            )
        p = min(max(patient.proba[positive], 1e-6), 1 - 1e-6)
        total = math.log(p / (1 - p))
        images = float(sum(logits))
        other = "attributes and bias" if self.model_attributes else "bias"
        return f"images push {push(images)}, {other} {push(total - images)}: logit {total:+.2f} toward {positive}"


def _cohort_at(path: Path | None, folder: OutputFolder) -> Cohort | None:
    """The data set at ``path`` read without checking its images (the run checked them), None when absent
    or unreadable."""
    if path is None or not path.exists():
        return None
    from ..data.problems import DataError
    from ..data.validation import load

    options = folder.data_options().model_copy(update={"check_images": False})
    try:
        found = load(path, options, progress=False)
    except (OSError, ValueError, DataError):
        return None
    return found if isinstance(found, Cohort) else None
