"""`smearmil report` on every kind of output folder: train, compare, features cv, ssl cv and predict.

One small simulated cohort feeds every run (a few epochs each); predict folders are faked from its images
in the documented format (predictions.csv, cells.csv, run.json, summary.json when labelled)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.report.html import build_report

from .test_report import assert_renders, render, table_header, table_rows

runner = CliRunner()
KINDS = (
    "train",
    "cv",
    "cv-seeds",
    "experts-cv",
    "compare",
    "features-cv",
    "ssl-cv",
    "predict-run",
    "predict-experts",
    "predict",
    "predict-new",
    "predict-3",
)
EXPERTS = (
    "kind: experts\nbase: cpu-fusion\ncells: {size: 32, n_jobs: 1}\ninner_folds: 2\n"
    "image_expert: [{name: mil/instance, params: {C: 0.1}}]\nattribute_expert: [clinical/gnb, clinical/logreg]\n"
)
CNN = "{name: CNN, config: cpu-cnn, overrides: {image: {size: 32, crop: null}, train: {epochs: 1}}}"


def cli(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def fake_predict(out: Path, cohort: Path, classes: list[str], labels: list[str], gates: bool) -> Path:
    """A predict folder as `smearmil predict` writes it, for the first patients of ``cohort``."""
    rng = np.random.default_rng(len(classes))
    out.mkdir()
    patients = sorted(p for p in (cohort / "trainset").iterdir() if p.is_dir())[: len(labels)]
    rows = ["patient,label," + ",".join(f"prob_{c}" for c in classes) + ",prediction,gate_image_expert,models"]
    cells = ["patient,file,cell_type,toward_class,logit_contribution_toward_class"]
    for folder, label in zip(patients, labels):
        proba = rng.dirichlet(np.ones(len(classes)))
        predicted = classes[int(proba.argmax())]
        gate = f"{rng.uniform():.4f}" if gates else ""
        rows.append(f"{folder.name},{label},{','.join(f'{v:.6f}' for v in proba)},{predicted},{gate},fold0+fold1")
        toward = classes[1] if len(classes) == 2 else predicted
        for j, image in enumerate(sorted(folder.glob("*.jpg"))):
            kind = ("lymphocyte", "neutrophil")[j % 2]
            cells.append(f"{folder.name},{image.resolve()},{kind},{toward},{rng.normal():.5f}")
    (out / "predictions.csv").write_text("\n".join(rows) + "\n")
    (out / "cells.csv").write_text("\n".join(cells) + "\n")
    (out / ".smearmil.json").write_text(json.dumps({"kind": "predict", "version": "0.1.0", "fingerprint": {}}))
    info = {"command": "predict", "model": str(out.parent / "train"), "data": str(cohort), "layout": "lymphocytosis"}
    (out / "run.json").write_text(json.dumps({**info, "versions": {"smearmil": "0.1.0"}, "host": "here"}))
    if any(labels):
        metrics = {"balanced_accuracy": 0.5, "roc_auc": 0.75, "sensitivity": 0.5, "specificity": 0.5}
        summary = {"class_names": classes, "threshold": 0.5, "metrics": metrics, "split": "all labelled patients"}
        (out / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, sim_cohort: Path) -> dict[str, Path]:
    """Every kind of output folder, each with its report (kind -> report.html)."""
    base = tmp_path_factory.mktemp("kinds")
    runs(base, sim_cohort)
    cache = base / "cache"
    out = {}
    for kind in KINDS:
        out[kind] = build_report(base / kind, galleries=2, cache_dir=cache, progress=False)
    return out


def runs(base: Path, sim_cohort: Path) -> None:
    """train, cv (deep, with its repeatability; experts; repeated over seeds), compare, features cv and ssl cv
    runs of ``sim_cohort`` and five predict folders in ``base``."""
    from smearmil.evaluation.encoder_probe import umap_panels

    cache = base / "cache"
    tiny = base / "tiny.yaml"
    tiny.write_text("base: cpu-cnn\nimage: {size: 32, crop: null}\ntrain: {epochs: 1}\n")
    cli("train", sim_cohort, "--config", tiny, "--out", base / "train", "--cache-dir", cache, "-q")
    cli("predict", base / "train", sim_cohort, "--out", base / "predict-run", "--cache-dir", cache, "-q")
    cli("cv", sim_cohort, "--config", tiny, "--folds", 2, "--out", base / "cv", "--cache-dir", cache, "-q")
    cli("repeatability", base / "cv", sim_cohort, "--sets", 2, "--cache-dir", cache, "-q")
    cli("cv", sim_cohort, "--config", "clinical-nb", "--folds", 2, "--seeds", "0,1", "--out", base / "cv-seeds", "-q")
    experts = base / "experts.yaml"
    experts.write_text(EXPERTS)
    cli("cv", sim_cohort, "--config", experts, "--folds", 2, "--out", base / "experts-cv", "--cache-dir", cache, "-q")
    predict = ["--out", base / "predict-experts", "--cache-dir", cache, "-q"]
    cli("predict", base / "experts-cv", sim_cohort, *predict)
    compare = base / "compare.yaml"
    compare.write_text(f"kind: compare\nmethods:\n  - {CNN}\n  - {{name: naive Bayes, baseline: clinical/gnb}}\n")
    cli("compare", sim_cohort, "--config", compare, "--folds", 2, "--out", base / "compare", "--cache-dir", cache, "-q")
    features = base / "features"
    cli("features", "extract", sim_cohort, "--encoder", "random:cpu-ssl", "--out", features, "--cache-dir", cache, "-q")
    head = ["--folds", 2, "--head-epochs", 2, "--no-umap", "-q"]
    cli("features", "cv", features, *head, "--out", base / "features-cv")
    cli("ssl", "cv", sim_cohort, "--method", "random", *head, "--out", base / "ssl-cv", "--cache-dir", cache)
    points = np.random.default_rng(0).normal(size=(20, 2))  # UMAPs as `ssl cv --umap` writes them (without umap)
    umap_panels({"": (points, ["lymphocyte", "neutrophil"] * 10)}, base / "ssl-cv" / "umap_cell_type.png", "cells")
    umap_panels({"": (points, list(np.linspace(-1, 1, 20)))}, base / "ssl-cv" / "umap_attention.png", "cells")
    two = ["reactive", "tumoral"]
    fake_predict(base / "predict", sim_cohort, two, ["reactive", "tumoral", "", "tumoral", "reactive"], gates=True)
    fake_predict(base / "predict-new", sim_cohort, two, [""] * 4, gates=False)
    fake_predict(base / "predict-3", sim_cohort, ["a", "b", "c"], ["a", "b", "c", "a"], gates=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_output_gets_a_report_that_renders(reports: dict[str, Path], kind: str, tmp_path: Path) -> None:
    page = reports[kind]
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    assert (page.parent / "report.md").read_text().count("![") == text.count("<img")
    for heading in ("Patients", "Provenance"):
        assert f"<h2>{heading}</h2>" in text
    assert_renders(page, tmp_path, min_images=2)


@pytest.mark.slow
def test_a_train_run_has_galleries_of_its_test_patients(reports: dict[str, Path]) -> None:
    text = reports["train"].read_text()
    run = reports["train"].parent
    with (run / "predictions.csv").open() as handle:
        test_patients = {r["patient"] for r in csv.DictReader(handle)}
    rows = table_rows(text, "Patients")
    assert {r[0] for r in rows} == test_patients
    fold = json.loads((run / "metrics.json").read_text())["fold"]
    assert all(r[5] == f"test ({fold})" for r in rows)
    assert "<h2>Cells that drive the decision</h2>" in text
    shown = [r for r in rows if r[-1] == "cells"]
    assert len(shown) == min(2, len(rows)) and all(f'<figure id="gallery-{r[0]}">' in text for r in shown)
    assert len({r[1] for r in shown}) == min(2, len({r[1] for r in rows}))  # every class the test patients have
    assert "each cell&#x27;s share of the evidence (+ toward" in text
    assert "<h2>Training curves</h2>" in text and "<h2>Calibration and operating points</h2>" in text


@pytest.mark.slow
def test_a_comparison_lists_each_methods_probability_per_patient(reports: dict[str, Path]) -> None:
    text = reports["compare"].read_text()
    assert "<h2>Data</h2>" in text and "sensitivity (positive class: tumoral)" in text
    header = table_header(text, "Patients")
    assert header == [
        "patient",
        "true class",
        "fold",
        "CNN: P(tumoral)",
        "naive Bayes: P(tumoral)",
        "methods wrong",
        "gallery",
    ]
    rows = table_rows(text, "Patients")
    assert len(rows) == 12
    wrong = [int(r[5]) for r in rows]
    assert wrong == sorted(wrong, reverse=True)
    for r in rows:
        assert int(r[5]) == sum("✗" in c for c in r[3:5])
    assert "Method explained: CNN." in text and text.count('<figure id="gallery-') == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["features-cv", "ssl-cv"])
def test_heads_on_features_show_attention_by_cell_type(reports: dict[str, Path], kind: str) -> None:
    text = reports[kind].read_text()
    summary = json.loads((reports[kind].parent / "summary.json").read_text())
    assert "<h2>Where the model looks</h2>" in text
    by_type = summary.get("attention_by_cell_type") or {}
    section = text.split("<h2>Where the model looks</h2>", 1)[1].split("<h2>", 1)[0]
    assert ("mean relative attention per cell type" in section) == bool(by_type)
    if by_type:
        rows = table_rows(text, "Where the model looks")
        assert [(r[0], r[1]) for r in rows] == [(c, t) for c, kinds in by_type.items() for t in kinds]
    assert "<h2>Cells the model attends to</h2>" in text and "relative attention (1: as much as" in text
    assert ("UMAP of the test cells" in text) == (kind == "ssl-cv")  # UMAPs where the run wrote them


@pytest.mark.slow
def test_predict_folders(reports: dict[str, Path]) -> None:
    labelled = reports["predict"].read_text()
    assert table_header(labelled, "Patients") == [
        "patient",
        "true class",
        "P(tumoral)",
        "prediction",
        "result",
        "models",
        "gate: image expert weight",
        "gallery",
    ]
    rows = table_rows(labelled, "Patients")
    wrong = [r[4] == "misclassified" for r in rows]
    assert wrong == sorted(wrong, reverse=True) and [r[4] for r in rows if r[1] == "unknown"] == ["-"]
    assert {r[1] for r in rows} == {"reactive", "tumoral", "unknown"}
    assert "Patients scored: all labelled patients." in labelled
    assert "histogram of P(tumoral)" in labelled and "<h2>Calibration and operating points</h2>" in labelled
    assert "below each cell its type" in labelled and labelled.count('<figure id="gallery-') == 2
    new = reports["predict-new"].read_text()
    assert table_header(new, "Patients") == ["patient", "P(tumoral)", "prediction", "models", "gallery"]
    assert "The true class of these patients is unknown" in new and "Calibration and operating points" not in new
    assert "<h2>Results" not in new and "isclassified" not in new
    three = reports["predict-3"].read_text()
    assert table_header(three, "Patients")[2:5] == ["P(a)", "P(b)", "P(c)"]
    assert "sensitivity (macro over classes)" in three
    assert "this task has 3 classes, so they are left out" in three


@pytest.mark.slow
def test_a_real_predict_folder(reports: dict[str, Path]) -> None:
    text = reports["predict-run"].read_text()
    folder = reports["predict-run"].parent
    with (folder / "predictions.csv").open() as handle:
        predictions = list(csv.DictReader(handle))
    rows = table_rows(text, "Patients")
    assert sorted(r[0] for r in rows) == sorted(p["patient"] for p in predictions)
    assert table_header(text, "Patients")[:5] == ["patient", "true class", "P(tumoral)", "prediction", "result"]
    summary = json.loads((folder / "summary.json").read_text())
    assert f"Patients scored: {summary['split']}." in text.replace("&#x27;", "'")
    with (folder / "cells.csv").open() as handle:
        cells = list(csv.DictReader(handle))
    assert {c["toward_class"] for c in cells} == {"tumoral"}
    shown = [r for r in rows if r[-1] == "cells"]
    assert len(shown) == 2
    if {r[1] for r in rows} == {"reactive", "tumoral"}:
        assert {r[1] for r in shown} == {"reactive", "tumoral"}
    assert "each cell&#x27;s share of the evidence (+ toward" in text


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_report_fits_a_phone_and_a_desktop(reports: dict[str, Path], kind: str, tmp_path: Path) -> None:
    """At 390 and 1,280 px wide the page never scrolls sideways (wide tables scroll in their own box)."""
    for width in (390, 1280):
        dom, _ = render(reports[kind], tmp_path, (width, 900))
        assert f'data-width="{width}"' in dom, "the window was not the width asked for"
        assert 'data-overflow="false"' in dom, f"the {kind} report scrolls sideways at {width} px"


@pytest.mark.slow
def test_an_experts_cv_shows_each_folds_choices_fusion_weights_and_cells(reports: dict[str, Path]) -> None:
    text = reports["experts-cv"].read_text()
    run = reports["experts-cv"].parent
    choices = {r[0]: r for r in table_rows(text, "Choices made inside the training patients")}
    assert set(choices) == {"fold0", "fold1"}
    for fold, r in choices.items():
        chosen = json.loads((run / fold / "choices.json").read_text())
        assert r[1] == "mil/instance(C=0.1) (the only candidate)"  # one candidate: nothing chosen, still named
        assert r[2] == chosen["attributes_expert"]["chosen"]
        assert r[3] == chosen["fusion"] and r[5] == f"{chosen['threshold']:.3f}"
        weights = {
            "stack": "log-odds: ",
            "moe": "gate g: ",
            "avg": "equal halves",
            "image-only": "the image expert alone",
            "attributes-only": "the attribute expert alone",
        }
        assert r[4].startswith(weights[chosen["fusion"]])
        if chosen["fusion"] == "stack":  # the stack's inputs by name: the experts and the attributes
            assert "× image expert" in r[4] and "× attribute expert" in r[4] and "× age" in r[4]
    assert "<h2>Cells that drive the decision</h2>" in text and text.count('<figure id="gallery-') == 2
    # a predict with the experts CV names its fold models' choices too
    predicted = {
        r[0] for r in table_rows(reports["predict-experts"].read_text(), "Choices made inside the training patients")
    }
    assert predicted == {"fold0", "fold1"}


@pytest.mark.slow
def test_a_repeated_cv_reports_its_first_seeds_patients(reports: dict[str, Path]) -> None:
    text = reports["cv-seeds"].read_text()
    seed = reports["cv-seeds"].parent / "seed-0"
    with (seed / "predictions.csv").open() as handle:
        patients = {r["patient"] for r in csv.DictReader(handle)}
    assert {r[0] for r in table_rows(text, "Patients")} == patients
    assert "A repeated CV: its first seed&#x27;s test predictions (seed-0)." in text
