"""How far each reviewer agrees with the model (Cohen's kappa on the patients they decided) and, where the
true class is known, how well each reads the patients (balanced accuracy, the model's beside it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Agreement:
    reviewer: str
    decided: int
    agree: int
    kappa: float | None  # None: undefined (a single class on both sides)
    labelled: int = 0
    reviewer_balanced_accuracy: float | None = None
    model_balanced_accuracy: float | None = None


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def agreements(decisions: Sequence[dict[str, Any]], labels: dict[str, str], classes: Sequence[str]) -> list[Agreement]:
    """One line per reviewer, from the latest decisions (``store.latest_decisions``) and the true classes
    (``labels``: patient -> class, empty when unknown)."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

    out = []
    for reviewer in sorted({d["reviewer"] for d in decisions}):
        mine = [d for d in decisions if d["reviewer"] == reviewer]
        model = [d["model_call"] for d in mine]
        said = [d["diagnosis"] for d in mine]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kappa = (
                _finite(cohen_kappa_score(model, said, labels=list(classes))) if len(set(model + said)) > 1 else None
            )
            known = [d for d in mine if labels.get(d["patient"])]
            truth = [labels[d["patient"]] for d in known]
            reviewer_ba = _finite(balanced_accuracy_score(truth, [d["diagnosis"] for d in known])) if known else None
            model_ba = _finite(balanced_accuracy_score(truth, [d["model_call"] for d in known])) if known else None
        agree = sum(m == s for m, s in zip(model, said))
        out.append(Agreement(reviewer, len(mine), agree, kappa, len(known), reviewer_ba, model_ba))
    return out
