"""The lab workflow: a final model on every labelled patient, predicting a new cohort with signed cell
contributions, CV folders as ensembles, data options and overrides on every command, provenance."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from smearmil.cli import app
from smearmil.data.cache import build_cache
from smearmil.data.validation import load_cohort
from smearmil.training.predictor import Ensemble, load_predictor, model_names
from smearmil.training.run_dir import RunDir
from smearmil.training.trained import TrainedModel

from .conftest import invoke, write_image

runner = CliRunner()
TINY = "base: cpu-cnn\nimage: {size: 32, crop: null}\ntrain: {epochs: 2, lr_steps: []}\n"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def unlabelled_copy(cohort: Path, target: Path) -> Path:
    """The cohort as the challenge shipped its test set: testset/<ID>/*.jpg + testset_data.csv, LABEL -1."""
    shutil.copytree(cohort / "trainset", target / "testset", ignore=shutil.ignore_patterns("*.csv"))
    table = rows(cohort / "trainset" / "trainset_true.csv")
    with (target / "testset" / "testset_data.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows({**r, "LABEL": "-1"} for r in table)
    return target


@pytest.fixture(scope="module")
def final_run(sim_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``train --all`` of a tiny mean-pooling CNN, and the image cache it used."""
    work = tmp_path_factory.mktemp("final")
    (work / "tiny.yaml").write_text(TINY)
    invoke(
        "train",
        sim_cohort,
        "--config",
        work / "tiny.yaml",
        "--all",
        "--out",
        work / "run",
        "--cache-dir",
        work / "k",
        "-q",
    )
    return work / "run", work / "k"


def test_train_all_then_predict_an_unlabelled_cohort(
    final_run: tuple[Path, Path], sim_cohort: Path, tmp_path: Path
) -> None:
    run, cache = final_run
    plan = json.loads((run / "splits.json").read_text())["folds"]
    labelled = load_cohort(sim_cohort, progress=False)
    assert plan[0]["name"] == "all" and not plan[0]["test"]
    assert sorted(plan[0]["train"] + plan[0]["val"]) == sorted(labelled.ids)  # every labelled patient trains
    info = json.loads((run / "run.json").read_text())
    assert {"smearmil", "torch", "lightning", "python"} <= set(info["versions"])
    assert info["command"] == "train" and "--all" in info["argv"] and info["host"] and info["threads"] >= 1
    assert info["device"] and info["fingerprint"] and info["date"]

    new = unlabelled_copy(sim_cohort, tmp_path / "new")
    (new / "testset" / "P001" / "zero.jpg").write_bytes(b"")
    result = runner.invoke(
        app,
        ["predict", str(run), str(new), "--out", str(tmp_path / "p"), "--cache-dir", str(cache)],
        env={"COLUMNS": "500"},
    )
    assert result.exit_code == 0, result.output
    assert "zero.jpg" in result.output  # the unreadable image is named, then skipped
    predictions, cells = rows(tmp_path / "p" / "predictions.csv"), rows(tmp_path / "p" / "cells.csv")
    readable = [p for p in (new / "testset").rglob("*.jpg") if p.stat().st_size]
    assert len(predictions) == len(labelled) and {r["label"] for r in predictions} == {""}
    assert len(cells) == len(readable) and {Path(r["file"]) for r in cells} == {p.resolve() for p in readable}
    assert {r["toward_class"] for r in cells} == {"tumoral"}
    assert not (tmp_path / "p" / "summary.json").exists()  # no labels, no metrics
    assert json.loads((tmp_path / "p" / "run.json").read_text())["model"] == str(run)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_contributions_decompose_the_logit(
    final_run: tuple[Path, Path], sim_cohort: Path, tmp_path: Path, pooling: str
) -> None:
    run, cache = final_run
    if pooling != "mean":
        (tmp_path / "c.yaml").write_text(TINY + f"model: {{pooling: {{name: {pooling}, hidden: 8}}}}\n")
        invoke(
            "train",
            sim_cohort,
            "--config",
            tmp_path / "c.yaml",
            "--all",
            "--out",
            tmp_path / "r",
            "--cache-dir",
            cache,
            "-q",
        )
        run = tmp_path / "r"
    predictor = load_predictor(run)
    cohort = load_cohort(sim_cohort, progress=False)
    trained = TrainedModel.load(run)
    bias = float(trained.model.image_expert().classifier.bias[0].detach())  # type: ignore[union-attr]
    images = build_cache(cohort, trained.config.image.preprocessing, cache, progress=False)
    weights = {p.id: p.weights for p in trained.predict_cohort(cohort, cohort.ids, images)}
    for p in predictor.predict(cohort, cohort.ids, cache, progress=False):
        assert p.contributions is not None
        logit = np.log(p.proba[1] / p.proba[0])
        assert abs(p.contributions.sum() - (logit - bias)) < 1e-4  # exact: sum = logit minus the bias
        assert np.ptp(p.contributions) > 0  # cells differ
        # signed logit shares, not the pooling's weights (1/n for mean, attention weights summing to 1)
        assert not np.allclose(p.contributions, weights[p.id], atol=1e-6)


def test_a_cv_folder_predicts_as_the_mean_of_its_fold_models(
    sim_cohort: Path, tmp_path: Path, final_run: tuple[Path, Path]
) -> None:
    _, cache = final_run
    (tmp_path / "tiny.yaml").write_text(TINY)
    invoke(
        "cv",
        sim_cohort,
        "--config",
        tmp_path / "tiny.yaml",
        "--folds",
        "2",
        "--out",
        tmp_path / "cv",
        "--cache-dir",
        cache,
        "-q",
    )
    cohort = load_cohort(sim_cohort, progress=False)
    ensemble = load_predictor(tmp_path / "cv")
    assert isinstance(ensemble, Ensemble) and ensemble.kind == "ensemble of 2 fold models"
    assert model_names(ensemble) == "fold0+fold1"
    found = np.stack([p.proba for p in ensemble.predict(cohort, cohort.ids, cache, progress=False)])
    folds = RunDir(tmp_path / "cv").fold_models()
    each = [np.stack([p.proba for p in f.model.predict(cohort, cohort.ids, cache, False)]) for f in folds]
    assert not np.allclose(each[0], each[1])
    np.testing.assert_allclose(found, np.mean(each, axis=0), atol=1e-6)
    # through the command line, with labels: metrics that say which patients, and that they trained on them
    out = invoke("predict", tmp_path / "cv", sim_cohort, "--out", tmp_path / "p", "--cache-dir", cache, "--json")
    result = json.loads(out)
    assert result["n_labelled"] == len(cohort) and result["patients_the_model_trained_on"] == len(cohort)
    assert "not a test" in result["split"] and set(result["metrics"]) >= {"balanced_accuracy", "roc_auc"}
    table = rows(tmp_path / "p" / "predictions.csv")
    np.testing.assert_allclose([float(r["prob_tumoral"]) for r in table], found[:, 1], atol=1e-5)
    # an unfinished CV does not predict as a smaller ensemble
    shutil.copytree(tmp_path / "cv", tmp_path / "half")
    (tmp_path / "half" / "fold1" / "predictor.json").unlink()
    result = runner.invoke(app, ["predict", str(tmp_path / "half"), str(sim_cohort), "--out", str(tmp_path / "h")])
    assert result.exit_code == 2 and "unfinished (no model for fold1)" in result.output


def patient_folder_cohort(sim: Path, root: Path, label_column: str = "Dx", cell_types: bool = False) -> Path:
    """The simulated cohort as <root>/<ID>/[<cell type>/]*.jpg + patients.csv with a ``label_column``."""
    table = rows(sim / "trainset" / "trainset_true.csv")
    root.mkdir(parents=True)
    with (root / "patients.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Patient_ID", label_column, "Age"])
        for i, r in enumerate(table):
            writer.writerow([r["ID"], ["AML", "APL"][int(r["LABEL"])], 40 + i])
    for r in table:
        for j, image in enumerate(sorted((sim / "trainset" / r["ID"]).glob("*.jpg"))):
            kind = ("Blast", "Lymphocyte")[j % 2] if cell_types else ""
            target = root / r["ID"] / kind / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target)
    return root


def test_label_column_set_and_print_config_on_train(
    sim_cohort: Path, tmp_path: Path, final_run: tuple[Path, Path]
) -> None:
    data = patient_folder_cohort(sim_cohort, tmp_path / "dx")
    (tmp_path / "tiny.yaml").write_text(TINY)
    base = ["train", data, "--config", tmp_path / "tiny.yaml", "--cache-dir", final_run[1]]
    result = runner.invoke(app, [str(a) for a in [*base, "--out", tmp_path / "x", "-q"]])
    assert result.exit_code == 2 and "--label-column" in result.output  # Dx is not a known label name
    printed = invoke(*base, "--label-column", "Dx", "--set", "train.stages.cnn.epochs=1", "--print-config")
    assert "label_column: Dx" in printed and "cnn:\n      epochs: 1" in printed
    assert not (tmp_path / "x").exists()  # printed, nothing run
    invoke(*base, "--label-column", "Dx", "--set", "train.stages.cnn.epochs=1", "--out", tmp_path / "run", "-q")
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "label_column: Dx" in config and "cnn:\n      epochs: 1" in config
    epochs = {r["epoch"] for r in rows(tmp_path / "run" / "cnn" / "logs" / "metrics.csv")}
    assert epochs == {"0"}  # the override changed the run: one epoch, not the config's two
    assert json.loads((tmp_path / "run" / "model.json").read_text())["class_names"] == ["AML", "APL"]
    # new patients in the same layout, their table without a diagnosis column: predicted, labels unknown
    new = tmp_path / "new"
    shutil.copytree(data, new)
    table = (new / "patients.csv").read_text().splitlines()
    (new / "patients.csv").write_text("\n".join(",".join(r.split(",")[::2]) for r in table) + "\n")  # drop Dx
    invoke("predict", tmp_path / "run", new, "--out", tmp_path / "p", "--cache-dir", final_run[1], "-q")
    predicted = rows(tmp_path / "p" / "predictions.csv")
    assert len(predicted) == 12 and {r["label"] for r in predicted} == {""}


def test_features_train_then_predict_through_the_encoder(
    sim_cohort: Path, tmp_path: Path, final_run: tuple[Path, Path]
) -> None:
    data = patient_folder_cohort(sim_cohort, tmp_path / "aml", "Diagnosis", cell_types=True)
    cache = final_run[1]
    invoke(
        "features",
        "train",
        data,
        "--encoder",
        "random:cpu-ssl",
        "--head",
        "attention",
        "--head-epochs",
        "3",
        "--out",
        tmp_path / "model",
        "--cache-dir",
        cache,
        "-q",
    )
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {"cells", "image-expert", "predictor.json", "run.json"}
    out = json.loads(
        invoke("predict", tmp_path / "model", data, "--out", tmp_path / "p", "--cache-dir", cache, "--json")
    )
    assert out["model_kind"] == "model" and out["method"] == "experts" and out["n_patients"] == 12
    assert out["patients_the_model_trained_on"] == 12 and "not a test" in out["split"]
    cells = rows(tmp_path / "p" / "cells.csv")
    assert {r["cell_type"] for r in cells} == {"Blast", "Lymphocyte"}
    # the same numbers as the saved encoder and head applied by hand to the patient's images
    from smearmil.training.cell_sources import Featurizer
    from smearmil.training.estimators import load_estimator
    from smearmil.training.heads import head_predictions

    encoder = Featurizer.load(tmp_path / "model" / "cells").encoder  # type: ignore[attr-defined]
    head = load_estimator(tmp_path / "model" / "image-expert")
    cohort = load_cohort(data, progress=False)
    images = build_cache(cohort, encoder.preprocessing, cache, progress=False)
    first = out["patients"][0]
    proba = head_predictions(head.model_, [encoder.embed(images.read_bag(first["patient"]))])[0][0]
    assert proba[1] == pytest.approx(first["prob_APL"], abs=1e-5)


def test_version_help_and_cache_commands(tmp_path: Path, sim_cohort: Path) -> None:
    from smearmil import __version__

    assert invoke("--version").strip() == f"smearmil {__version__}"
    assert "<bool>" not in invoke("train", "--help") and "<bool>" not in invoke("predict", "--help")
    invoke("data", "cache", sim_cohort, "--size", "16", "--cache-dir", tmp_path / "k", "-q")
    (tmp_path / "k" / "notes").mkdir()  # not a cache: never listed, never deleted
    listed = json.loads(invoke("cache", "list", "--cache-dir", tmp_path / "k", "--json"))
    assert len(listed) == 1 and listed[0]["cells"] > 0 and listed[0]["data"] == str(sim_cohort.resolve())
    assert "freed" in invoke("cache", "clear", "--cache-dir", tmp_path / "k", "--data", sim_cohort)
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["notes"]


def test_evaluate_and_repeatability_on_new_patients(
    final_run: tuple[Path, Path], sim_cohort: Path, tmp_path: Path
) -> None:
    run, cache = final_run
    # the run's own patients: every one of them trained the model, which the output says
    own = json.loads(invoke("evaluate", run, sim_cohort, "--json", "--cache-dir", cache, "--out", tmp_path / "own"))
    assert own["n_patients"] == 12 and "12 of them among the model's training patients" in own["split"]
    result = runner.invoke(app, ["repeatability", str(run), str(sim_cohort), "--cache-dir", str(cache)])
    assert result.exit_code == 2 and "did not train on" in result.output
    # new patients (other ids, one patient fewer, one cell more), as a lab would have them next month
    other = tmp_path / "other"
    shutil.copytree(sim_cohort, other, ignore=shutil.ignore_patterns("P011"))
    for folder in (other / "trainset").iterdir():
        if folder.is_dir():
            folder.rename(folder.with_name("N" + folder.name[1:]))
    table = other / "trainset" / "trainset_true.csv"
    lines = table.read_text().splitlines(True)
    table.write_text(lines[0] + "".join("N" + line[1:] for line in lines[1:] if not line.startswith("P011")))
    write_image(other / "trainset" / "N000" / "extra.jpg", seed=7, size=32)
    report = json.loads(invoke("evaluate", run, other, "--json", "--cache-dir", cache, "--out", tmp_path / "e"))
    assert report["n_patients"] == 11 and "all 11 labelled patients" in report["split"]
    assert "not a test" not in report["split"]
    assert len(rows(tmp_path / "e" / "predictions.csv")) == 11
    args = ["repeatability", run, other, "--sets", "2", "--json", "--cache-dir", cache, "--out", tmp_path / "r"]
    found = json.loads(invoke(*args))
    assert set(found["models"]) == {"CNN"}
    written = json.loads((tmp_path / "r" / "repeatability.json").read_text())
    assert written["models"]["CNN"]["patients"] == 11 and "11 new to the run" in written["split"]
    assert not (run / "repeatability.json").exists()  # the run's own results are left alone


@pytest.mark.parametrize(
    ("command", "flags", "shown"),
    [
        (
            ["features", "cv", "no-such-folder"],
            ["--set", "dropout=0.5", "--epochs", "7"],
            ["dropout: 0.5", "epochs: 7"],
        ),
        (["ssl", "pretrain", "no-such-data"], ["--epochs", "3", "--devices", "2"], ["epochs: 3", "devices: 2"]),
        (["cv", "no-such-data", "--config", "cpu-fusion"], ["--set", "inner_folds=3"], ["inner_folds: 3"]),
    ],
)
def test_print_config_on_every_kind_of_config(command: list[str], flags: list[str], shown: list[str]) -> None:
    printed = invoke(*command, *flags, "--print-config")  # resolved before any data is read
    assert all(line in printed for line in shown), printed


def test_a_flag_a_config_kind_lacks_is_refused() -> None:
    result = runner.invoke(app, ["cv", "x", "--config", "cpu-fusion", "--epochs", "3", "--print-config"])
    assert result.exit_code == 2 and "--epochs does not apply to a config of kind experts" in result.output
