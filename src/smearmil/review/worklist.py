"""The worklist's order and filters: uncertain first, disagreements, not yet reviewed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..protocols.worklist import margin
from .folder import ReviewFolder, ReviewPatient

SORTS = {
    "uncertain": "most uncertain first",
    "patient": "patient id",
    "probability": "probability, highest first",
    "unreviewed": "not yet reviewed first",
}
FILTERS = {
    "all": "every patient",
    "uncertain": "uncertain calls",
    "disagreements": "a reviewer disagrees with the model",
    "unreviewed": "not yet reviewed",
}


def closeness(folder: ReviewFolder, p: ReviewPatient) -> float:
    """How far the call is from flipping (small: uncertain)."""
    probabilities = [p.proba[c] for c in folder.class_names]
    if len(probabilities) == 2:
        return abs(probabilities[1] - p.threshold)
    return margin(probabilities)


def ordered(
    folder: ReviewFolder, decisions: Sequence[dict[str, Any]], sort: str = "uncertain", show: str = "all"
) -> list[ReviewPatient]:
    """The patients of ``folder`` filtered by ``show`` and ordered by ``sort`` (``SORTS``, ``FILTERS``);
    ``decisions``: the latest decision per patient and reviewer."""
    decided: dict[str, list[str]] = {}
    for d in decisions:
        decided.setdefault(d["patient"], []).append(d["diagnosis"])
    rows = list(folder.patients)
    if show == "uncertain":
        rows = [p for p in rows if p.uncertain]
    elif show == "disagreements":
        rows = [p for p in rows if any(d != p.call for d in decided.get(p.id, []))]
    elif show == "unreviewed":
        rows = [p for p in rows if p.id not in decided]
    if sort == "uncertain":
        rows.sort(key=lambda p: (not p.uncertain, closeness(folder, p), p.index))
    elif sort == "patient":
        rows.sort(key=lambda p: p.id)
    elif sort == "probability":
        rows.sort(key=lambda p: (-p.probability, p.index))
    elif sort == "unreviewed":
        rows.sort(key=lambda p: (p.id in decided, closeness(folder, p), p.index))
    return rows


def expert_heading(column: str, positive: str = "", attributes: Sequence[str] = ()) -> str:
    """A predictions.csv expert or fusion column in words: ``p_image`` -> ``image expert P(tumoral)``,
    ``stack_attributes`` -> ``stack logit: attributes``, ``stack_attribute:1`` -> ``stack logit: <the model's
    second attribute>``, ``gate_image_expert`` -> ``gate: image weight``."""
    p = f"P({positive})" if positive else "P"
    if column.startswith("p_"):
        return f"{column[2:]} expert {p}"
    if column.startswith("stack_"):
        name = column[len("stack_") :]
        if name.startswith("attribute:") and name[len("attribute:") :].isdigit():
            j = int(name[len("attribute:") :])
            name = attributes[j] if j < len(attributes) else name
        return f"stack logit: {name}"
    if column == "gate_image_expert":
        return "gate: image weight"
    return column


def expert_value(text: str) -> str:
    """An expert's number to 3 decimals (text that is no number as it is)."""
    try:
        return f"{float(text):.3f}"
    except ValueError:
        return text
