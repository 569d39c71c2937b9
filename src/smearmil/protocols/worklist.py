"""What ``smearmil predict`` tells a reader: each patient's call with the probability behind it, a flag
when the call is uncertain, a closing tally, and a warning when the predictions look like a model at
chance.

**Uncertain** (``DEFAULT_BAND``, 0.10): for two classes, the positive class's probability lies within the
band of the decision threshold (0.40-0.60 around 0.50); for more classes, the two likeliest classes lie
within twice the band of each other (the same rule as two classes at threshold 0.50).

**At chance**: a model that learned calls at least some patients with confidence; one that did not hedges
on everybody, returning about the class balance it trained on (0.38-0.55, say). The predictions of at
least ``MIN_PATIENTS`` patients are flagged when no patient is called confidently: for none does the
likeliest class lead the next by ``CONFIDENT_MARGIN`` (0.40; for two classes, a probability of 0.70).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BAND = 0.10
CONFIDENT_MARGIN = 0.40
MIN_PATIENTS = 5


@dataclass(frozen=True)
class Call:
    """One line of the worklist: ``probability`` is the positive class's (two classes) or the call's."""

    patient: str
    call: str
    probability: float
    uncertain: bool
    label: str = ""  # the true class, empty when unknown


def _probabilities(row: dict[str, Any], class_names: Sequence[str]) -> list[float]:
    return [float(row[f"prob_{c}"]) for c in class_names]


def margin(probabilities: Sequence[float]) -> float:
    """How far the likeliest class leads the next (to 1e-9: 0.7 - 0.3 is 0.4, not 0.39999999999999997)."""
    top, second = sorted(probabilities, reverse=True)[:2]
    return round(top - second, 9)


def band_limits(threshold: float, band: float) -> tuple[float, float]:
    """The uncertain probabilities of the positive class (two classes; the limits themselves are not),
    clipped to 0-1."""
    return max(0.0, round(threshold - band, 9)), min(1.0, round(threshold + band, 9))


def is_uncertain(probabilities: Sequence[float], threshold: float, band: float) -> bool:
    if len(probabilities) == 2:
        low, high = band_limits(threshold, band)
        return low < probabilities[1] < high
    return margin(probabilities) < round(2 * band, 9)


def calls(
    rows: Sequence[dict[str, Any]], class_names: Sequence[str], threshold: float, band: float = DEFAULT_BAND
) -> list[Call]:
    """The worklist of ``predictions.csv`` rows (``patient, label, prob_<class>..., prediction``)."""
    found = []
    for row in rows:
        probabilities = _probabilities(row, class_names)
        shown = probabilities[1] if len(class_names) == 2 else probabilities[class_names.index(row["prediction"])]
        uncertain = is_uncertain(probabilities, threshold, band)
        found.append(Call(str(row["patient"]), str(row["prediction"]), shown, uncertain, str(row.get("label", ""))))
    return found


def band_text(class_names: Sequence[str], threshold: float, band: float = DEFAULT_BAND) -> str:
    if len(class_names) == 2:
        low, high = band_limits(threshold, band)
        return f"{class_names[1]} {low:.2f}-{high:.2f}"
    return f"top two classes within {2 * band:.2f}"


def counts(found: Sequence[Call], class_names: Sequence[str]) -> dict[str, int]:
    """Patients per class among the certain calls, then ``uncertain``."""
    tally = {c: sum(1 for f in found if f.call == c and not f.uncertain) for c in class_names}
    return {**tally, "uncertain": sum(1 for f in found if f.uncertain)}


def tally_line(found: Sequence[Call], class_names: Sequence[str], threshold: float, band: float = DEFAULT_BAND) -> str:
    """``42 patients: 30 tumoral, 9 reactive, 3 uncertain (tumoral 0.40-0.60)``."""
    per_class = counts(found, class_names)
    uncertain = per_class.pop("uncertain")
    parts = [f"{n} {c}" for c, n in per_class.items()]
    parts.append(f"{uncertain} uncertain ({band_text(class_names, threshold, band)})")
    return f"{len(found)} patient{'s' if len(found) != 1 else ''}: {', '.join(parts)}"


def chance_warning(rows: Sequence[dict[str, Any]], class_names: Sequence[str], run: str | Path = "RUN") -> str | None:
    """What to say when no patient of at least ``MIN_PATIENTS`` is called confidently by the model of
    folder ``run``; None otherwise."""
    if len(rows) < MIN_PATIENTS:
        return None
    probabilities = [_probabilities(r, class_names) for r in rows]
    if any(margin(p) >= CONFIDENT_MARGIN for p in probabilities):
        return None
    if len(class_names) == 2:
        positive = [p[1] for p in probabilities]
        spread = f"every probability of {class_names[1]} lies within {min(positive):.2f}-{max(positive):.2f}"
        hedge = f"none reaches {0.5 + CONFIDENT_MARGIN / 2:.2f} for either class"
    else:
        top = [max(p) for p in probabilities]
        spread = f"the likeliest class has probability {min(top):.2f}-{max(top):.2f}"
        hedge = f"it never leads the next by {CONFIDENT_MARGIN:.2f}"
    if (Path(run) / "summary.json").is_file():
        check = f"Check its cross-validation figures ({Path(run) / 'summary.json'}, or `smearmil report {run}`)"
    else:
        check = f"Check how its config cross-validates (`smearmil cv DATA --config {Path(run) / 'config.yaml'}`)"
    return (
        f"no patient of {len(rows)} is called with confidence ({spread}; {hedge}): the model looks no better "
        f"than chance, as if it did not learn to tell the classes apart. {check} before using these calls"
    )
