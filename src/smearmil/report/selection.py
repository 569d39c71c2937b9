"""Which patients a report's galleries show: the misclassified first, then the most uncertain, with every
class the cohort has (its true class, or the call where the truth is unknown) among them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .folder import PatientRow


def margin(row: PatientRow, class_names: Sequence[str], threshold: float = 0.5) -> float:
    """How far the call is from flipping: |P(positive) - threshold| for two classes, else the gap between
    the two most probable classes (small: uncertain)."""
    if len(class_names) == 2 and class_names[1] in row.proba:
        return abs(row.proba[class_names[1]] - threshold)
    top = sorted(row.proba.values(), reverse=True)
    return top[0] - top[1] if len(top) > 1 else 1.0


def group(row: PatientRow) -> str:
    """The class a patient stands for in the selection: its true class, or the call when it is unknown."""
    return row.truth if row.truth is not None else row.prediction


def ranked(
    rows: Sequence[PatientRow], class_names: Sequence[str], thresholds: Mapping[str, float] | None = None
) -> list[PatientRow]:
    """Misclassified patients first, then the rest; the most uncertain first within each (``thresholds``:
    the binary cut per fold name, ``""`` for every fold)."""
    cuts = thresholds or {}

    def key(r: PatientRow) -> tuple[bool, float, str]:
        cut = cuts.get(r.fold, cuts.get("", 0.5))
        return (not r.wrong, margin(r, class_names, cut), r.patient)

    return sorted(rows, key=key)


def gallery_order(
    rows: Sequence[PatientRow],
    class_names: Sequence[str],
    n: int,
    thresholds: Mapping[str, float] | None = None,
) -> list[PatientRow]:
    """Every row, the ``n`` to show first: taken in ``ranked`` order, except that a patient of a class
    already shown is passed over while the slots left are needed for the classes not shown yet. The rest
    follow in ``ranked`` order (stand-ins for a patient whose gallery cannot be drawn)."""
    order = ranked(rows, class_names, thresholds)
    present = {group(r) for r in order}
    chosen: list[PatientRow] = []
    for r in order:
        if len(chosen) == n:
            break
        missing = present - {group(c) for c in chosen}
        if group(r) not in missing and len(missing) >= n - len(chosen):
            continue
        chosen.append(r)
    picked = {id(r) for r in chosen}
    return chosen + [r for r in order if id(r) not in picked]
