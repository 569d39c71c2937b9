"""Which patients a report's galleries show, in which units their cells' numbers are, and how a report of
new (unlabelled) patients reads: predict folders written in the documented format, with chosen
probabilities and contributions, reported by ``build_report`` (no model needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from smearmil.explain.evidence import evidence_shares, share_text, toward_call
from smearmil.report.folder import PatientRow
from smearmil.report.html import build_report
from smearmil.report.selection import gallery_order

from .conftest import write_image

CLASSES = ["reactive", "tumoral"]
# patient: (true class or "", P(tumoral)); threshold 0.5
COHORT = {
    "R1": ("reactive", 0.10),  # right, sure
    "R2": ("reactive", 0.40),  # right, uncertain
    "R3": ("reactive", 0.80),  # wrong, sure
    "R4": ("reactive", 0.60),  # wrong, uncertain
    "T1": ("tumoral", 0.95),  # right, sure
    "T2": ("tumoral", 0.55),  # right, the most uncertain of all
    "T3": ("tumoral", 0.90),  # right, sure
}


def predict_folder(out: Path, patients: dict[str, tuple[str, float]], contributions: dict[str, list[float]]) -> Path:
    """A folder as `smearmil predict` writes it: predictions.csv, cells.csv (raw logit contributions toward
    tumoral, one row per cell), run.json, the output marker and, when some patient is labelled, summary.json."""
    out.mkdir(parents=True)
    rows = ["patient,label,prob_reactive,prob_tumoral,prediction,models"]
    cells = ["patient,file,cell_type,toward_class,logit_contribution_toward_class"]
    for k, (pid, (label, p)) in enumerate(patients.items()):
        rows.append(f"{pid},{label},{1 - p:.6f},{p:.6f},{CLASSES[int(p >= 0.5)]},fold0+fold1")
        for j, value in enumerate(contributions.get(pid, [0.3, -0.1, 0.05, -0.2])):
            image = write_image(out.parent / "cells" / pid / f"{j}.png", seed=10 * k + j, fmt="PNG")
            cells.append(f"{pid},{image},lymphocyte,tumoral,{value}")
    (out / "predictions.csv").write_text("\n".join(rows) + "\n")
    (out / "cells.csv").write_text("\n".join(cells) + "\n")
    (out / ".smearmil.json").write_text(json.dumps({"kind": "predict", "version": "0.1.0", "fingerprint": {}}))
    info = {"command": "predict", "model": str(out.parent / "no-model"), "data": str(out.parent / "cells")}
    (out / "run.json").write_text(json.dumps(info))
    if any(label for label, _ in patients.values()):
        metrics = {"balanced_accuracy": 0.5, "roc_auc": 0.75, "sensitivity": 0.5, "specificity": 0.5}
        summary = {"class_names": CLASSES, "threshold": 0.5, "metrics": metrics, "split": "all labelled patients"}
        (out / "summary.json").write_text(json.dumps(summary))
    return out


def galleries(page: Path) -> list[str]:
    """The patients whose galleries the page shows, in order, with their captions."""
    text = page.read_text()
    return re.findall(r'<figure id="gallery-[^"]+"><img[^>]*><figcaption class=note>([^<]*)</figcaption>', text)


def row(pid: str, truth: str | None, p: float) -> PatientRow:
    return PatientRow(pid, truth, {"reactive": 1 - p, "tumoral": p}, CLASSES[int(p >= 0.5)])


def test_misclassified_first_then_the_most_uncertain_and_every_class() -> None:
    rows = [row(pid, label or None, p) for pid, (label, p) in COHORT.items()]
    assert [r.patient for r in gallery_order(rows, CLASSES, 3)][:3] == ["R4", "R3", "T2"]
    # two slots: both misclassified patients are reactive, so the second goes to the most uncertain tumoral one
    assert [r.patient for r in gallery_order(rows, CLASSES, 2)][:2] == ["R4", "T2"]
    # the threshold a model uses decides what is uncertain: at 0.85, T3 (0.90) is nearer it than T2 (0.55)
    assert [r.patient for r in gallery_order(rows, CLASSES, 2, {"": 0.85})][:2] == ["R3", "T3"]
    # nobody misclassified (the demo's case): the most uncertain of each class, not the first ids
    right = [r for r in rows if not r.wrong]
    assert [r.patient for r in gallery_order(right, CLASSES, 2)][:2] == ["T2", "R2"]
    # every row stays in the order, as stand-ins for a gallery that cannot be drawn
    assert sorted(r.patient for r in gallery_order(rows, CLASSES, 2)) == sorted(COHORT)


def test_a_report_shows_both_classes_misclassified_first(tmp_path: Path) -> None:
    page = build_report(predict_folder(tmp_path / "predict", COHORT, {}), galleries=2, progress=False)
    shown = galleries(page)
    assert len(shown) == 2
    assert shown[0].startswith("patient R4: true reactive, called tumoral (P(tumoral) = 0.600, threshold 0.5)")
    assert shown[1].startswith("patient T2: true tumoral, called tumoral")  # then the most uncertain, other class
    text = page.read_text()
    assert "Patients shown: the misclassified first, then those whose call is the most uncertain" in text
    # the table links exactly the patients shown
    assert re.findall(r'href="#gallery-([^"]+)"', text) == ["R4", "T2"]


def test_contributions_are_shares_of_the_evidence_toward_the_call() -> None:
    raw = np.array([-3.0, -1.0, 0.0, 2.0])  # logit contributions toward tumoral
    shares = evidence_shares(raw)
    np.testing.assert_allclose(shares, [-0.5, -1 / 6, 0.0, 1 / 3])
    assert np.abs(shares).sum() == pytest.approx(1.0)
    assert [share_text(s) for s in (0.123, -0.5, 0.004, -0.0004)] == ["+12%", "-50%", "+0.4%", "-0.0%"]
    # a patient called reactive: the numbers turn toward reactive, so its strongest cells read positive
    values, toward, against = toward_call(raw, "tumoral", "reactive", "reactive")
    assert (toward, against) == ("reactive", "tumoral")
    assert share_text(evidence_shares(values).max()) == "+50%"
    # called tumoral (or a multi-class task, no "against"): unchanged
    assert toward_call(raw, "tumoral", "reactive", "tumoral")[1] == "tumoral"
    assert toward_call(raw, "b", "", "a")[1] == "b"
    assert not evidence_shares(np.zeros(3)).any()


def test_a_reactive_call_is_explained_toward_reactive(tmp_path: Path) -> None:
    # every cell of R1 pushes toward reactive: its gallery reads "+ toward reactive", cells.csv keeps raw logits
    folder = predict_folder(tmp_path / "predict", {"R1": ("reactive", 0.1)}, {"R1": [-0.0045, -0.002, -0.001, -0.003]})
    page = build_report(folder, galleries=1, progress=False)
    (caption,) = galleries(page)
    assert "called reactive" in caption and "share of the evidence (+ toward reactive, - toward tumoral)" in caption
    assert "-0.0045" in (folder / "cells.csv").read_text()
    assert "+12% toward tumoral" in page.read_text()  # the units are explained once, with an example


def test_a_report_of_new_patients_has_no_truth_wording(tmp_path: Path) -> None:
    new = {pid: ("", p) for pid, (_, p) in COHORT.items()}
    page = build_report(predict_folder(tmp_path / "predict", new, {}), galleries=2, progress=False)
    text = page.read_text()
    words = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    for wording in ("isclassified", "true reactive", "true tumoral", "Results", "ensitivity", "correct"):
        assert wording not in words, wording
    assert "<h2>Results" not in text and "Calibration" not in text
    assert "The true class of these patients is unknown" in words
    assert "Most uncertain calls first (P(tumoral) closest to the threshold, 0.5)" in words
    # the most uncertain first, with both calls: T2 (0.55, called tumoral), then R2 or R4 (0.40 / 0.60)
    shown = galleries(page)
    assert shown[0].startswith("patient T2: called tumoral") and shown[1].startswith("patient R2: called reactive")
    patients = re.findall(r"<tr[^>]*><td>([A-Z]\d)</td>", text)
    margins = [abs(new[p][1] - 0.5) for p in patients]
    assert patients[0] == "T2" and margins == sorted(margins)  # the table too: most uncertain first
