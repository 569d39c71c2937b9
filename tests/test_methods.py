"""The one method interface: every registered method fits, saves, loads and predicts the same; a CV folder
predicts as the mean of its fold predictors; experts configs deploy with their cells' contributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from smearmil.data.splits import Fold, make_splits
from smearmil.data.validation import load_cohort
from smearmil.protocols.cv import CVSettings, run_cv
from smearmil.training.methods import METHODS, FitSettings, load_method
from smearmil.training.predictor import Ensemble, load_one, load_predictor

from .conftest import invoke
from .test_report import assert_renders

SMALL_CELLS = {"size": 32, "n_jobs": 1}
HEADS = [{"name": "mil/instance", "params": {"C": 0.1}}, {"name": "head", "params": {"pooling": "mean", "epochs": 3}}]
# a tiny config of every registered method (a new method adds its own line: the tests below then cover it)
TINY: dict[str, tuple[str, dict[str, Any]]] = {
    "run": (
        "cpu-moe-cnn",
        {
            "image": {"size": 32, "crop": None},
            "model": {"encoder": {"k": 2}, "paradigm": "P2"},
            "train": {"epochs": 1, "max_cells_per_bag": 8, "stages": {"mlp": {"epochs": 2}, "moe": {"epochs": 1}}},
        },
    ),
    "experts": (
        "cpu-fusion",
        {
            "cells": SMALL_CELLS,
            "image_expert": HEADS,
            "attribute_expert": ["clinical/gnb", "clinical/logreg"],
            "inner_folds": 2,
        },
    ),
    "baseline": ("", {"baseline": "mil/instance", "inputs": "imgs+attrs", "features": SMALL_CELLS}),
}


def tiny_method(kind: str, tmp_path: Path) -> Any:
    preset, overrides = TINY[kind]
    if not preset:  # a config file of its own kind
        path = tmp_path / f"{kind}.yaml"
        path.write_text(json.dumps({"kind": kind, **overrides}))
        return load_method(path)
    return load_method(preset, overrides)


@pytest.mark.slow
@pytest.mark.parametrize("kind", METHODS.names())
def test_every_method_fits_saves_loads_and_predicts_the_same(kind: str, sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    method = tiny_method(kind, tmp_path)
    assert method.kind == kind
    plan = make_splits(cohort, "kfold", folds=3, val=method.val_share(), seed=0)
    fold = plan.folds[0]
    settings = FitSettings(0, 0, tmp_path, tmp_path / "cache", False)
    fitted = method.fit(cohort, Fold(fold.name, fold.train, fold.val, ()), tmp_path / "fit", settings)
    fitted.save(tmp_path / "fit")
    again = load_one(tmp_path / "fit")
    assert type(again) is type(fitted) and again.class_names == cohort.class_names
    assert again.threshold == fitted.threshold and again.uses_images == fitted.uses_images
    test = list(fold.test)
    before = fitted.predict(cohort, test, tmp_path / "cache", False)
    after = again.predict(cohort, test, tmp_path / "cache", False)
    np.testing.assert_allclose([p.proba for p in after], [p.proba for p in before], atol=1e-6)
    assert all(np.isclose(p.proba.sum(), 1) for p in after)
    for b, a in zip(before, after):
        assert a.details.keys() == b.details.keys() and (a.gate is None) == (b.gate is None)
        if b.contributions is not None:  # a method that sees cells explains them, the same after the reload
            assert a.contributions is not None and len(a.contributions) == len(a.files or [])
            np.testing.assert_allclose(a.contributions, b.contributions, atol=1e-5)


def test_the_instance_level_experts_contributions_sum_to_its_patient_score(sim_cohort: Path, tmp_path: Path) -> None:
    from smearmil.training.methods.feature_experts import ExpertsPredictor

    cohort = load_cohort(sim_cohort, progress=False)
    method = load_method("cpu-fusion", {"cells": SMALL_CELLS, "image_expert": "mil/instance", "fusion": "avg"})
    fold = make_splits(cohort, "kfold", folds=3, val=0.0, seed=0).folds[0]
    fitted = method.fit(cohort, fold, tmp_path / "fit", FitSettings(cache_dir=tmp_path / "cache", progress=False))
    assert isinstance(fitted, ExpertsPredictor)
    found = fitted.predict(cohort, list(fold.test), tmp_path / "cache", False)
    bags = fitted.featurizer.bags(cohort, list(fold.test), tmp_path / "cache", False)  # type: ignore[union-attr]
    for p in found:
        cells = p.contribution()
        assert cells is not None and p.files is not None and len(cells) == len(p.files) == len(bags[p.id])
        score = fitted.fitted.image.decision_function([bags[p.id]])[0]  # the image expert's log-odds
        assert cells.sum() == pytest.approx(score, abs=1e-4)
        p_image = 1 / (1 + np.exp(-score))
        assert p.details["p_image"] == pytest.approx(p_image, abs=1e-6)
    signed = [p.contribution() for p in found]
    assert any((c > 0).any() and (c < 0).any() for c in signed if c is not None)  # signed shares, not weights


def test_damaged_or_model_less_folders_give_a_clear_error(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    method = load_method("clinical-nb")
    fold = make_splits(cohort, "kfold", folds=3, val=0.0, seed=0).folds[0]
    method.fit(cohort, fold, tmp_path / "fit", FitSettings(progress=False)).save(tmp_path / "fit")
    meta = json.loads((tmp_path / "fit" / "predictor.json").read_text())
    for name in [n for n in (tmp_path / "fit").rglob("*") if n.is_file() and n.name != "predictor.json"]:
        name.unlink()  # the estimator's own files lost
    with pytest.raises(ValueError, match="(missing or damaged|not an estimator smearmil saved).*train"):
        load_one(tmp_path / "fit")
    (tmp_path / "fit" / "predictor.json").write_text(json.dumps({**meta, "method": "nonesuch"}))
    with pytest.raises(ValueError, match="'nonesuch', which this smearmil does not know"):
        load_one(tmp_path / "fit")
    # a finished CV whose folds keep no model (an older smearmil's, or a features CV)
    cv = tmp_path / "cv"
    make_splits(cohort, "kfold", folds=3, val=0.0, seed=0).save(cv / "splits.json")
    (cv / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="finished CV without saved fold models"):
        load_predictor(cv)


@pytest.mark.slow
def test_a_fusion_cv_folder_predicts_the_mean_of_its_fold_predictors(sim_cohort: Path, tmp_path: Path) -> None:
    cohort = load_cohort(sim_cohort, progress=False)
    method = tiny_method("experts", tmp_path)
    settings = CVSettings(folds=3, seed=0, cache_dir=tmp_path / "cache", progress=False)
    result = run_cv(cohort, method, tmp_path / "cv", settings)
    marker = json.loads((tmp_path / "cv" / ".smearmil.json").read_text())
    assert marker["kind"] == "cv" and marker["method"] == "experts"
    ensemble = load_predictor(tmp_path / "cv")
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3
    ids = cohort.ids
    found = ensemble.predict(cohort, ids, tmp_path / "cache", False)
    each = [m.predict(cohort, ids, tmp_path / "cache", False) for m in ensemble.members]
    np.testing.assert_allclose([p.proba for p in found], np.mean([[p.proba for p in e] for e in each], axis=0))
    assert not np.allclose([p.proba for p in each[0]], [p.proba for p in each[1]])  # the folds differ
    np.testing.assert_allclose(
        [p.contribution() for p in found][0], np.mean([e[0].contribution() for e in each], axis=0), atol=1e-9
    )
    # each saved fold predictor gives the CV's own test predictions back
    for fold in result.folds:
        saved = load_one(tmp_path / "cv" / fold.fold).predict(cohort, [p.id for p in fold.predictions], None, False)
        np.testing.assert_allclose([p.proba for p in saved], fold.proba, atol=1e-9)
    assert {"choices", "cells_seen_by_encoder"} <= set(result.summary) and result.summary["method"] == "experts"
    # repeatability: the fusion and each of its experts alone, over image sets of the held-out patients
    from smearmil.protocols.repeatability import run_repeatability

    table = run_repeatability(tmp_path / "cv", cohort, sets=3, cache_dir=tmp_path / "cache", progress=False)
    assert set(table["models"]) == {"EXPERTS", "IMAGE EXPERT", "ATTRIBUTE EXPERT"}
    models = table["models"]
    assert models["ATTRIBUTE EXPERT"]["p_true_std_mean"] == 0  # attributes alone: the same on every image set
    assert models["IMAGE EXPERT"]["p_true_std_mean"] > 0 and models["EXPERTS"]["patients"] == len(cohort.ids)


@pytest.mark.slow
def test_a_fusion_deploys_train_all_then_predict_and_report(sim_cohort: Path, tmp_path: Path) -> None:
    (tmp_path / "fusion.yaml").write_text(json.dumps({"kind": "experts", "base": "cpu-fusion", **TINY["experts"][1]}))
    cache = ["--cache-dir", str(tmp_path / "cache")]
    text = invoke("train", sim_cohort, "--config", tmp_path / "fusion.yaml", "--all", "--out", tmp_path / "run", *cache)
    assert "chosen inside the training patients: image_expert" in text
    assert json.loads((tmp_path / "run" / "choices.json").read_text())["inner_folds"] >= 2
    assert (tmp_path / "run" / "predictor.json").is_file() and (tmp_path / "run" / "cells" / "cells.json").is_file()
    result = json.loads(invoke("predict", tmp_path / "run", sim_cohort, "--out", tmp_path / "p", *cache, "--json"))
    cohort = load_cohort(sim_cohort, progress=False)
    assert result["method"] == "experts" and result["n_patients"] == len(cohort)
    assert result["n_cells"] == sum(cohort[i].n_cells for i in cohort.ids)  # one row per readable cell
    header = (tmp_path / "p" / "predictions.csv").read_text().splitlines()[0].split(",")
    assert {"p_image", "p_attributes"} <= set(header)  # each expert's probability beside the fused one
    fusion = json.loads((tmp_path / "run" / "choices.json").read_text())["fusion"]
    weights = {"moe": "gate_image_expert", "stack": "stack_image"}
    if fusion in weights:  # the fusion's weights or gate per patient
        rows = (tmp_path / "p" / "predictions.csv").read_text().splitlines()[1:]
        assert all(r.split(",")[header.index(weights[fusion])] != "" for r in rows)
    invoke("report", tmp_path / "p", "-q")
    assert "kind: experts" in (tmp_path / "p" / "config.yaml").read_text()
    dom = assert_renders(tmp_path / "p" / "report.html", tmp_path, min_images=2)  # plots and cell galleries
    assert "gallery-" in dom


@pytest.mark.slow
def test_a_repeated_cv_predicts_as_every_fold_of_every_seed(sim_cohort: Path, tmp_path: Path) -> None:
    from smearmil.report.folder import OutputFolder

    config = {**TINY["experts"][1], "image_expert": "mil/instance", "fusion": "avg"}
    (tmp_path / "fusion.yaml").write_text(json.dumps({"kind": "experts", "base": "cpu-fusion", **config}))
    cache = ["--cache-dir", str(tmp_path / "cache")]
    invoke(
        "cv",
        sim_cohort,
        "--config",
        tmp_path / "fusion.yaml",
        "--folds",
        "2",
        "--seeds",
        "0,1",
        "--out",
        tmp_path / "cv",
        *cache,
    )
    ensemble = load_predictor(tmp_path / "cv")
    assert isinstance(ensemble, Ensemble)
    names = ["seed-0/fold0", "seed-0/fold1", "seed-1/fold0", "seed-1/fold1"]
    assert ensemble.names == names
    choices = OutputFolder(tmp_path / "cv").choices()  # the report's table: what each fold of each seed chose
    assert list(choices) == names and all("attributes_expert" in c for c in choices.values())


def test_a_saved_estimator_that_asks_for_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    from smearmil.training.estimators import load_estimator, save_estimator

    save_estimator(FunctionTransformer(func=eval), tmp_path / "bad")  # a file that would call eval when used
    with pytest.raises(ValueError, match="builtins.eval"):
        load_estimator(tmp_path / "bad")
